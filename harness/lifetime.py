"""Worker processes live no longer than the process that started them.

A pool worker whose parent dies (killed, or its terminal closed) would otherwise go on training or building as an
orphan that nobody waits for. `follow_parent()`, called in a pool's initializer, starts a thread that exits the
worker when its parent is gone. The work it leaves is left as a `kill -9` would leave it, which the grid and the
zoo already recover from (resume points, atomic installs).
"""

from __future__ import annotations

import os
import threading
import time


def follow_parent(every: float = 2.0) -> None:
    """In a worker process: exit when the process that started it is gone."""
    threading.Thread(target=_watch, args=(os.getppid(), every), daemon=True, name="parent-watch").start()


def _watch(parent: int, every: float) -> None:
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)

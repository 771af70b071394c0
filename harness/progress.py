"""Progress of long work: each run writes where it is to a small file, and the grid shows it.

A run, in whatever worker process, keeps `locks/<run key>.progress.json` up to date (fed from Lightning by
`harness.training.ProgressCallback`): stage, step of the stage's total, loss, samples/s, when it started. The grid
process reads these files and shows one status line: on a terminal it rewrites that line in place every second; in
a log or CI it prints it as a plain line every `ABLATE_PROGRESS_EVERY` seconds (default 30). The same files tell
`ablate grid status` what a running run is doing. `ProgressLine` shows the world and zoo builds the same way.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

WRITE_EVERY_S = 2.0  # a run rewrites its progress file at most this often


def _live(stream) -> bool:
    """Rewrite a line in place only on a terminal, and only from the main process: parallel workers (two zoo
    chains, grid workers) would overwrite each other's line, so they print plain lines."""
    import multiprocessing

    return bool(getattr(stream, "isatty", lambda: False)()) and multiprocessing.parent_process() is None


class StatusLine:
    """A throttled status line: rewritten in place (cut to the terminal's width) every second on a terminal, a
    plain `ablate` log line every `ABLATE_PROGRESS_EVERY` seconds (default 30) otherwise."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.live = _live(self.stream)
        self.every = 1.0 if self.live else float(os.environ.get("ABLATE_PROGRESS_EVERY", "30"))
        self.started = self._shown = time.monotonic()

    def due(self) -> bool:
        """Whether it is time to show the line again (and, if so, from now on it was shown)."""
        now = time.monotonic()
        if now - self._shown < self.every:
            return False
        self._shown = now
        return True

    def show(self, text: str) -> None:
        if self.live:
            try:
                width = os.get_terminal_size(self.stream.fileno()).columns
            except (AttributeError, OSError, ValueError):  # not a real terminal file (a test's stream)
                width = 120
            self.stream.write("\r\033[K" + text[: max(20, width - 1)])
            self.stream.flush()
        else:
            import logging

            logging.getLogger("ablate").info(text)

    def clear(self) -> None:
        """Before a normal log line on a terminal: wipe the status line so the two do not mix."""
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()


class ProgressLine(StatusLine):
    """`done/total` of long work (the world build, each zoo entry) with an ETA, on a StatusLine."""

    def __init__(self, what: str, total: int, stream: Any = None) -> None:
        super().__init__(stream)
        self.what, self.total = what, total

    def update(self, done: int, detail: str = "") -> None:
        if self.due():
            left = (time.monotonic() - self.started) / max(done, 1) * (self.total - done)
            self.show(f"{self.what}: {done}/{self.total}{', ' + detail if detail else ''}, ETA {duration(left)}")

    def close(self) -> None:
        self.clear()


def progress_file(locks: Path, key: str) -> Path:
    return Path(locks) / f"{key}.progress.json"


class RunProgress:
    """Where one run is; `update(...)` rewrites its progress file (atomically, at most every WRITE_EVERY_S)."""

    def __init__(self, locks: Path, key: str, label: str, stages: list[tuple[str, int]]) -> None:
        self.path = progress_file(locks, key)
        self.state: dict[str, Any] = {"run": label, "stages": stages, "stage": None, "step": 0, "total": 0,
                                      "loss": None, "samples_per_s": None, "started": time.time(), "pid": os.getpid()}
        self._written = 0.0

    def update(self, force: bool = False, **values: Any) -> None:
        self.state.update(values, updated=time.time())
        if force or time.monotonic() - self._written >= WRITE_EVERY_S:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.state))
            os.replace(tmp, self.path)
            self._written = time.monotonic()

    def close(self) -> None:
        self.path.unlink(missing_ok=True)


def read_progress(locks: Path, key: str) -> dict[str, Any] | None:
    try:
        return json.loads(progress_file(locks, key).read_text())
    except (OSError, ValueError):
        return None


def duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def describe(state: dict[str, Any]) -> str:
    """'lynx seed 0: finetune 320/600, loss 1.234, 45 samples/s, stage ETA 1m10s'."""
    if state.get("stage") is None:
        return f"{state['run']}: preparing"
    if state.get("stage") == "eval":
        return f"{state['run']}: evaluating"
    rate = state.get("steps_per_s") or 0
    left = (state["total"] - state["step"]) / rate if rate else None
    parts = [f"{state['run']}: {state['stage']} {state['step']}/{state['total']}"]
    if state.get("loss") is not None:
        parts.append(f"loss {state['loss']:.3f}")
    if state.get("samples_per_s"):
        parts.append(f"{state['samples_per_s']:.0f} samples/s")
    parts.append(f"stage ETA {duration(left)}")
    return ", ".join(parts)


class GridDisplay:
    """The grid's status line: runs done of the total, an ETA from the runs finished so far, each running run."""

    def __init__(self, name: str, total: int, locks: Path, done: int = 0, stream: Any = None) -> None:
        self.name, self.total, self.locks = name, total, locks
        self.done = done  # finished before this invocation or now
        self.finished_now = 0  # finished by this invocation: the ETA's basis
        self.status = StatusLine(stream)

    def line(self, running: list[str]) -> str:
        elapsed = time.monotonic() - self.status.started
        eta = elapsed / self.finished_now * (self.total - self.done) if self.finished_now else None
        states = [s for s in (read_progress(self.locks, key) for key in running) if s]
        head = f"grid {self.name}: {self.done}/{self.total} done, {duration(elapsed)} so far, ETA {duration(eta)}"
        return " | ".join([head, *map(describe, states)])

    def finished(self) -> None:
        self.done += 1
        self.finished_now += 1

    def follow(self, keys: list[str]) -> threading.Event:
        """Show the line in a background thread until the returned event is set; it names the runs of `keys`
        that are running (those with a progress file)."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(0.5):
                if self.status.due():
                    self.status.show(self.line([k for k in keys if progress_file(self.locks, k).exists()]))

        threading.Thread(target=loop, daemon=True, name="grid-progress").start()
        return stop

    def clear(self) -> None:
        self.status.clear()

"""Tasks that wait for one another, run on a pool of worker processes: a grid's zoo entries and its runs.

A task starts once every task it needs has ended well and a worker is free; among the ready tasks the first in
the given order goes first. The grid lists the zoo entries it lacks (in build order) before its runs, so a run
starts as soon as the entries it loads exist, while the zoo's longest chain is still building on another worker,
instead of every run waiting for the whole zoo. A task whose need failed is never started.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Task:
    """`fn(*args)` in a worker (both picklable) once the tasks named in `needs` have ended well."""

    id: str
    fn: Callable[..., Any]
    args: tuple
    needs: frozenset[str] = frozenset()


def run_tasks(pool: Executor, tasks: list[Task], workers: int, ended: Callable[[Task, Future], bool],
              blocked: Callable[[Task, str], None]) -> None:
    """Submit `tasks` to `pool`, at most `workers` at a time, each once its needs are met. `ended(task, future)`
    gets every submitted task as it ends and says whether it ended well; `blocked(task, need)` gets each task that
    is not started because `need` did not end well. Returns when no task is left."""
    known = {t.id for t in tasks}
    for task in tasks:
        if task.needs - known:
            raise ValueError(f"task {task.id} needs {sorted(task.needs - known)}, which are not among the tasks")
    waiting, running = list(tasks), {}
    good: set[str] = set()
    bad: set[str] = set()

    def start_ready() -> None:
        while waiting and len(running) < workers:
            ready = next((t for t in waiting if t.needs <= good | bad), None)
            if ready is None:
                return
            waiting.remove(ready)
            failed = sorted(ready.needs & bad)
            if failed:
                bad.add(ready.id)
                blocked(ready, failed[0])
                continue
            running[pool.submit(ready.fn, *ready.args)] = ready

    start_ready()
    while running:
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            task = running.pop(future)
            (good if ended(task, future) else bad).add(task.id)
        start_ready()
    if waiting:  # only tasks that need one another in a cycle are left
        raise RuntimeError(f"tasks that need one another in a cycle never start: {[t.id for t in waiting]}")

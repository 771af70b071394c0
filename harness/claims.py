"""Claims: exactly one process does a thing, across machines that share one MLflow tracking server.

A file lock works on one disk only. MLflow has no lock, but every backend store keeps experiment names unique (a
database constraint), so creating an experiment named after the thing is an atomic test-and-set: the process whose
`create_experiment` succeeds holds the claim, every other one gets RESOURCE_ALREADY_EXISTS.

- `claimed(client, name)`: held while a run executes. The holder refreshes a heartbeat tag; a claim whose holder
  stopped beating for `STALE_AFTER_S` (or whose holder process is gone, when it ran on this machine) is taken over
  by the next attempt, `name#2`, `name#3`, ... which is again atomic. Released claims go to MLflow's trash, so they
  leave the experiment list but keep their names taken.
- `once(client, name)`: True for the one process that should create a thing (a grid's parent run, a run's
  MLflow run); the others wait for it to appear.

Claim experiments are named `ablate-claim:<name>`; `ablate grid run` uses them only with a tracking server
(`--tracking-uri`), since on one disk the file locks of `harness/grid.py` already tell a live holder at once.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

PREFIX = "ablate-claim:"
HEARTBEAT = "ablate.heartbeat"  # epoch seconds, refreshed by the holder
HOLDER = "ablate.holder"  # host:pid of the holder
HEARTBEAT_EVERY_S = 15.0
STALE_AFTER_S = 120.0
T = TypeVar("T")


def holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _create(client: MlflowClient, name: str) -> str | None:
    """The claim experiment's id when this process created it, None when another one exists."""
    from mlflow.exceptions import MlflowException

    try:
        return client.create_experiment(PREFIX + name, tags={HEARTBEAT: f"{time.time():.0f}", HOLDER: holder()})
    except MlflowException as err:
        if err.error_code == "RESOURCE_ALREADY_EXISTS":
            return None
        raise


def _number(attempt) -> int:
    """The attempt number of a claim experiment named `...#N`."""
    return int(attempt.name.rsplit("#", 1)[1])


def latest(client: MlflowClient, name: str):
    """The newest attempt at claim `name` (`name#1`, `name#2`, ...), active or released; None if never tried."""
    from mlflow.entities import ViewType

    found = client.search_experiments(view_type=ViewType.ALL, filter_string=f"name LIKE '{PREFIX}{name}#%'")
    return max(found, key=_number, default=None)


def alive(experiment, now: float | None = None, stale_after: float = STALE_AFTER_S) -> bool:
    """Whether a claim experiment is held by a live process: active, with a recent heartbeat, and (when its holder
    ran on this machine) a holder process that still exists."""
    if experiment.lifecycle_stage != "active":
        return False
    tags = experiment.tags or {}
    host, _, pid = tags.get(HOLDER, "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
    beat = float(tags.get(HEARTBEAT, "0") or 0)
    return (now or time.time()) - beat < stale_after


@contextmanager
def claimed(client: MlflowClient, name: str, stale_after: float = STALE_AFTER_S,
            every: float = HEARTBEAT_EVERY_S) -> Iterator[bool]:
    """Yield True while this process holds claim `name`, False when a live process holds it."""
    last = latest(client, name)
    if last is not None and alive(last, stale_after=stale_after):
        yield False
        return
    number = _number(last) + 1 if last is not None else 1
    exp_id = _create(client, f"{name}#{number}")
    if exp_id is None:  # another process took this attempt first
        yield False
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            try:
                client.set_experiment_tag(exp_id, HEARTBEAT, f"{time.time():.0f}")
            except Exception:  # a server hiccup: the next beat tries again, and staleness takes minutes
                pass

    thread = threading.Thread(target=beat, daemon=True, name=f"claim-{name}")
    thread.start()
    try:
        yield True
    finally:
        stop.set()
        thread.join(timeout=5)
        client.delete_experiment(exp_id)


def once(client: MlflowClient, name: str) -> bool:
    """True for the one process that creates claim `name` (it is released at once; its name stays taken)."""
    exp_id = _create(client, name)
    if exp_id is None:
        return False
    client.delete_experiment(exp_id)
    return True


def wait_for(find: Callable[[], T | None], what: str, timeout: float = 120.0, every: float = 0.5) -> T:
    """Poll `find` until it returns something (another process is creating it)."""
    from harness.errors import AblateError

    deadline = time.monotonic() + timeout
    while (found := find()) is None:
        if time.monotonic() > deadline:
            raise AblateError(f"another process claimed to create {what} but it did not appear within "
                              f"{timeout:.0f} s; run the grid again")
        time.sleep(every)
    return found

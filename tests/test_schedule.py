"""The grid's task scheduling: zoo entries and runs in one pool, each run starting once the entries it loads exist."""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from harness.schedule import Task, run_tasks


def wait_for(path: str, seconds: float = 60.0) -> str:
    """A long task: it ends when `path` exists (another task makes it) or after `seconds`."""
    deadline = time.monotonic() + seconds
    while not Path(path).exists():
        if time.monotonic() > deadline:
            return "timed out"
        time.sleep(0.05)
    return "released"


def make(path: str) -> str:
    Path(path).write_text("")
    return "made"


def fail(message: str) -> str:
    raise RuntimeError(message)


def test_a_task_starts_when_its_needs_end_while_a_longer_one_still_runs(tmp_path):
    """Two workers. The long zoo entry waits for a file that only a run makes, and that run needs the short
    entry only: so the grid finishes at once only if the run starts beside the long entry. A task whose need
    failed is never started, and what needs the long entry starts after it."""
    release, late = str(tmp_path / "release"), str(tmp_path / "late")
    tasks = [
        Task("zoo/long", wait_for, (release,)),
        Task("zoo/short", make, (str(tmp_path / "short"),)),
        Task("zoo/broken", fail, ("no weights",)),
        Task("run/a", make, (release,), frozenset({"zoo/short"})),
        Task("run/b", make, (late,), frozenset({"zoo/long"})),
        Task("run/c", make, (str(tmp_path / "never"),), frozenset({"zoo/broken", "zoo/short"})),
    ]
    ended, blocked = [], []

    def on_end(task, future):
        ok = future.exception() is None
        ended.append((task.id, future.result() if ok else str(future.exception())))
        return ok

    started = time.monotonic()
    with ProcessPoolExecutor(2) as pool:
        run_tasks(pool, tasks, 2, on_end, lambda task, need: blocked.append((task.id, need)))
    assert dict(ended) == {"zoo/long": "released", "zoo/short": "made", "zoo/broken": "no weights",
                           "run/a": "made", "run/b": "made"}
    assert blocked == [("run/c", "zoo/broken")] and not (tmp_path / "never").exists()
    assert [i for i, _ in ended].index("run/b") > [i for i, _ in ended].index("zoo/long")
    assert time.monotonic() - started < 50  # the long entry did not wait out its 60 s


def test_needs_that_are_not_tasks_are_refused():
    with pytest.raises(ValueError, match="run/a needs \\['zoo/missing'\\]"):
        run_tasks(None, [Task("run/a", make, ("x",), frozenset({"zoo/missing"}))], 2, None, None)


def test_the_zoo_plan_lists_missing_entries_in_build_order_with_what_each_run_waits_for(tiny_store, tmp_path):
    """On the tiny world with no zoo yet, lynx waits for the instruct LLM, the base LLM it is built from and the
    large ViT; a run with a random LLM waits for the ViT only; with the zoo complete nothing is planned."""
    from harness.assets import plan_zoo
    from harness.resolve import resolve
    from harness.tracking import Store

    store = Store(tmp_path / "out")
    (store.root / "cache").mkdir(parents=True)
    (store.root / "cache" / "world").symlink_to(tiny_store.cache / "world", target_is_directory=True)
    store.create()
    lynx = resolve("lynx", "tiny").config
    random_llm = resolve("lynx", "tiny", cli={"model.llm.source": "random"}).config
    blind = resolve("lynx", "tiny", cli={"model.llm.source": "random", "model.vision.weights": "random"}).config
    builds, needs = plan_zoo([lynx, random_llm, blind], store)
    assert [b.entry for b in builds] == ["llm-base", "vit-large", "llm-instruct"]
    ids = {b.entry: b.id for b in builds}
    assert all(i.startswith("cache/zoo/tiny-") and i.endswith(e) for e, i in ids.items())
    assert [b.needs for b in builds] == [frozenset(), frozenset(), frozenset({ids["llm-base"]})]
    assert needs == [frozenset(ids.values()), frozenset({ids["vit-large"]}), frozenset()]
    assert plan_zoo([lynx, random_llm], tiny_store) == ([], [frozenset(), frozenset()])

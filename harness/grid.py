"""Run an experiment's grid: resolve every run first, then do only what is missing, in parallel workers.

A grid is one MLflow parent run with one child per (variant, seed). A child that FINISHED is skipped on re-run;
one that failed or was killed runs again into the same MLflow run. A lock file per run key makes sure that two
workers (or two `ablate grid run` processes on one machine) never run the same run at once.
"""

from __future__ import annotations

import fcntl
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config.resolve import ResolvedRun
from harness.errors import AblateError
from harness.experiment import Experiment
from harness.tracking import PARENT_TAG, Store, child_runs, experiment_id, finish, provenance, start_parent

log = logging.getLogger("ablate")
SUMMARY = (("Open-VQA image", "eval/openvqa_image/acc"), ("video", "eval/openvqa_video/acc"),
           ("MME acc", "eval/mme/acc"))  # what a finished run's progress line shows


@dataclass
class GridOutcome:
    """What happened to each run of a grid."""

    parent_run_id: str
    finished: list[str] = field(default_factory=list)  # run labels trained now
    skipped: list[str] = field(default_factory=list)  # already finished before
    busy: list[str] = field(default_factory=list)  # locked by another process
    failed: dict[str, str] = field(default_factory=dict)  # label -> reason

    @property
    def ok(self) -> bool:
        return not self.failed


def label(run: ResolvedRun) -> str:
    return f"{run.variant.name} seed {run.config.seed}"


@contextmanager
def run_lock(store: Store, key: str):
    """Yield True when this process holds the run's lock, False when another process is running it."""
    path = store.locks / f"{key}.lock"
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _work(root: str, run_id: str, run: ResolvedRun, threads: int | None) -> tuple[str, dict[str, Any] | None, str]:
    """Worker entry point: ('done', metrics, '') | ('busy', None, '') | ('failed', None, reason)."""
    from harness.runner import execute

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    store = Store(Path(root))
    with run_lock(store, run.key) as held:
        if not held:
            return "busy", None, ""
        try:
            return "done", execute(store, run_id, run, threads), ""
        except AblateError as err:
            return "failed", None, str(err)


def prepare_assets(runs: list[ResolvedRun], store: Store, workers: int = 2) -> None:
    """Build each distinct world and the zoo entries its runs load once, before workers start, so they never race
    on the cache; independent zoo entries build in parallel processes."""
    from harness.assets import ensure_zoo, zoo_entries
    from harness.data import build_tokenizer, build_world
    from harness.zoo import describe_zoo

    groups: dict[tuple[str, str], tuple[Any, set[str]]] = {}
    for run in runs:
        cfg = run.config
        first, entries = groups.get((repr(cfg.world), cfg.scale), (cfg, set()))
        groups[(repr(cfg.world), cfg.scale)] = (first, entries | zoo_entries(cfg.model))
    for cfg, entries in groups.values():
        world = build_world(cfg.world, store.cache)
        if entries:
            folder = ensure_zoo(cfg, store, world, build_tokenizer(world), entries=entries, workers=workers)
            for line in describe_zoo(folder, entries):
                log.info("zoo %s", line)


def _record(outcome: GridOutcome, run: ResolvedRun, result: tuple[str, dict[str, Any] | None, str]) -> None:
    """Add a finished worker's result to the outcome and print its line."""
    status, metrics, reason = result
    if status == "done":
        outcome.finished.append(label(run))
        scores = ", ".join(f"{name} {metrics[key]:.1f}%" for name, key in SUMMARY if key in metrics)
        log.info("  done    %-28s %s", label(run), scores)
    elif status == "busy":
        outcome.busy.append(label(run))
        log.info("  busy    %-28s (running in another process)", label(run))
    else:
        outcome.failed[label(run)] = reason
        log.info("  FAILED  %-28s %s", label(run), reason)


def run_grid(experiment: Experiment, store: Store, cli: dict[str, Any] | None = None) -> GridOutcome:
    """Resolve, then train and evaluate every missing run of `experiment` into `store`."""
    from harness.assets import check_sources

    runs = experiment.expand(cli)  # every config is validated before anything is written
    for run in runs:
        check_sources(run.config.model)
    client = store.create()
    exp_id = experiment_id(client, store, experiment.name)
    parent_id = start_parent(client, exp_id, experiment.name, tags={
        "ablate.experiment_file": str(experiment.path),
        "ablate.baseline": experiment.baseline,
        "ablate.scale": experiment.scale,
        "ablate.variants": ",".join(experiment.all_variants),
        "ablate.seeds": ",".join(map(str, experiment.seeds)),
        "ablate.run_keys": ",".join(r.key for r in runs),  # what the report shows: the grid as last run
        **provenance(),
    })
    outcome = GridOutcome(parent_id)
    existing = child_runs(client, exp_id, parent_id)
    todo: list[tuple[ResolvedRun, str]] = []
    for run in runs:
        previous = existing.get(run.key)
        if previous is not None and previous.info.status == "FINISHED":
            outcome.skipped.append(label(run))
            continue
        if previous is not None:
            run_id = previous.info.run_id
        else:
            run_id = client.create_run(exp_id, run_name=f"{run.variant.name}-s{run.config.seed}", tags={
                PARENT_TAG: parent_id, "ablate.run_key": run.key, "ablate.variant": run.variant.name,
                "ablate.kind": "run", "ablate.grid": experiment.name,
            }).info.run_id
            client.update_run(run_id, status="SCHEDULED")
        todo.append((run, run_id))

    log.info("grid %s: %d runs, %d already finished, %d to run with %d worker(s)",
             experiment.name, len(runs), len(outcome.skipped), len(todo), experiment.workers)
    if todo:
        prepare_assets([r for r, _ in todo], store, workers=max(2, experiment.workers))
    workers = min(experiment.workers, len(todo)) or 1
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
    started = time.perf_counter()
    if workers == 1:
        for run, run_id in todo:
            _record(outcome, run, _work(str(store.root), run_id, run, threads))
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_work, str(store.root), run_id, run, threads): run for run, run_id in todo}
            for future in as_completed(futures):  # report each run as it ends, not when the grid does
                _record(outcome, futures[future], future.result())
    log.info("grid %s finished in %.0fs", experiment.name, time.perf_counter() - started)
    finish(client, parent_id, ok=outcome.ok)
    return outcome

"""Run an experiment's grid: resolve every run first, then do only what is missing, in parallel workers.

A grid is one MLflow parent run with one child per (variant, seed). On a re-run, a child that FINISHED is skipped,
or re-scored without training when only the evaluation settings changed (`harness/rescore.py`);
one that was killed (Ctrl-C, or `kill -9`: RUNNING with no process holding its lock) resumes from its last resume
point (`harness/resume.py`) in the same MLflow run, or without one starts again in a fresh MLflow run, the old one
going to MLflow's trash, so no metric step is logged twice; a failed one runs again only with
`retry_failed`. A lock file per run key makes sure that two workers (or two `ablate grid run` processes on one
machine) never run the same run at once; `grid_status` reads the same state for `ablate grid status`.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import AblateError, ConfigError, Interrupted
from harness.evaluation.splits import headline_scores
from harness.experiment import Experiment
from harness.lifetime import follow_parent
from harness.progress import GridDisplay, progress_file
from harness.resolve import ResolvedRun
from harness.resume import checkpoint_dir, describe_point, discard, resumable_by
from harness.schedule import Task, run_tasks
from harness.tracking import (
    PARENT_TAG,
    Store,
    child_runs,
    experiment_id,
    find_runs,
    finish,
    mark_killed,
    newest_by_key,
    provenance,
    start_parent,
)

log = logging.getLogger("ablate")


@dataclass
class GridOutcome:
    """What happened to each run of a grid."""

    parent_run_id: str
    finished: list[str] = field(default_factory=list)  # run labels trained now
    skipped: list[str] = field(default_factory=list)  # already finished before
    rescored: list[str] = field(default_factory=list)  # finished before, scored again under new eval settings
    other_build: list[str] = field(default_factory=list)  # finished, but on another build of the world or zoo
    copied: list[str] = field(default_factory=list)  # finished in another experiment of the store: copied, not trained
    busy: list[str] = field(default_factory=list)  # locked by another process
    failed: dict[str, str] = field(default_factory=dict)  # label -> reason
    submitted: dict[str, str] = field(default_factory=dict)  # label -> cluster job id (`submit_grid`)

    @property
    def ok(self) -> bool:
        return not self.failed


@contextmanager
def run_lock(store: Store, key: str, wait_s: float = 2.0):
    """Yield True when this process holds the run's lock, False when another process is running it. A lock held
    only for a moment (`ablate grid status` peeking) is waited for, up to `wait_s`."""
    path = store.locks / f"{key}.lock"
    with open(path, "w") as handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.1)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_busy = False  # in a worker process: whether it is running a run now
_stop = False  # in a worker process: Ctrl-C was pressed, so take no further run


def _on_sigint(signum, frame) -> None:
    """In a worker, Ctrl-C interrupts the run it is training (which marks itself KILLED), and the worker takes no
    further run (a queued one is handed back untouched); an idle worker exits when the pool shuts down."""
    global _stop
    _stop = True
    if _busy:
        raise KeyboardInterrupt


def _init_worker() -> None:
    signal.signal(signal.SIGINT, _on_sigint)
    follow_parent()  # a worker whose grid process died exits; the next `grid run` resumes its run


def scored_as_configured(child, run: ResolvedRun) -> bool:
    """Whether a finished MLflow run was last evaluated with the settings `run` asks for."""
    return child.data.tags.get("ablate.eval_key") == run.eval_key


@contextmanager
def execution_claim(store: Store, client, run_id: str, key: str):
    """Yield whether this process may execute the run: always on one disk (the file lock decides), and with a
    tracking server only for the process whose MLflow claim succeeded (`harness/claims.py`)."""
    if store.remote is None:
        yield True
        return
    from harness.claims import claimed

    with claimed(client, claim_name(client.get_run(run_id).info.experiment_id, key)) as mine:
        yield mine


def claim_name(exp_id: str, key: str) -> str:
    return f"{exp_id}:{key}"


def claim_alive(client, exp_id: str, key: str, started_ms: int) -> bool:
    """Whether a live process (on any machine) holds the execution claim of run `key`, or, when none ever claimed
    it, whether its MLflow run (started at `started_ms`) is too young to be a dead machine's: MLflow creates a run
    RUNNING, and another machine may be between creating it and scheduling it."""
    from harness.claims import STALE_AFTER_S, alive, latest

    last = latest(client, claim_name(exp_id, key))
    if last is not None:
        return alive(last)
    return time.time() - started_ms / 1000 < STALE_AFTER_S


def _work(root: str, run_id: str, run: ResolvedRun, threads: int | None,
          rescore_only: bool = False, remote: str | None = None) -> tuple[str, dict[str, Any] | None, str]:
    """Worker entry point: ('done', metrics, '') | ('rescored', metrics, how) | ('busy', None, '') |
    ('skipped', None, why) | ('failed', None, reason)."""
    global _busy
    from harness.rescore import rescore
    from harness.runner import execute

    if _stop:
        return "skipped", None, "interrupted before it started"
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if os.environ.get("ABLATE_VERBOSE"):
        logging.getLogger("ablate").setLevel(logging.DEBUG)
    store = Store(Path(root), remote=remote)
    client = store.client()
    with run_lock(store, run.key) as held, execution_claim(store, client, run_id, run.key) as mine:
        if not held or not mine:
            return "busy", None, ""
        current = client.get_run(run_id)  # another process may have run it since the grid looked
        if current.info.lifecycle_stage == "deleted" or (
                current.info.status == "FINISHED" and (not rescore_only or scored_as_configured(current, run))):
            return "skipped", None, "finished or replaced by another process meanwhile"
        _busy = True
        try:
            if rescore_only:
                metrics, how = rescore(store, run_id, run, threads)
                return "rescored", metrics, how
            return "done", execute(store, run_id, run, threads), ""
        except AblateError as err:
            return "failed", None, str(err)
        finally:
            _busy = False
            if _stop:  # Lightning ignores SIGINT after handling one; keep ours for the next run's check
                signal.signal(signal.SIGINT, _on_sigint)


def _zoo_work(config, root: str, entry: str) -> tuple[str, list[str], str]:
    """Worker entry point: build one zoo entry (`harness.assets.plan_zoo`); ('done', its description lines, '').
    Ctrl-C interrupts it, as it does a run."""
    global _busy
    from harness.assets import zoo_build_entry

    if _stop:
        raise AblateError("interrupted before it started")
    _busy = True
    try:
        return "done", zoo_build_entry(config, root, entry), ""
    finally:
        _busy = False


def prepare_assets(runs: list[ResolvedRun], store: Store, workers: int = 2) -> None:
    """Build each distinct world of `runs` and the zoo entries they load before any run starts, so runs never race
    on the cache: the missing entries (`harness.assets.plan_zoo`) in up to `workers` processes, each as soon as the
    entries it is built from exist (`harness.schedule`). A grid with one worker, a sweep and a cluster submission
    prepare this way; a grid with more workers builds its zoo beside its runs instead (`_run_all`)."""
    from harness.assets import plan_zoo

    builds, _ = plan_zoo([run.config for run in runs], store)
    if not builds:
        return
    tasks = [Task(b.id, _zoo_work, (b.config, str(store.root), b.entry), b.needs) for b in builds]
    failed: list[str] = []

    def ended(task: Task, future) -> bool:
        built = _zoo_built(task, _result(future))
        failed.extend([] if built else [task.id])
        return built

    def blocked(task: Task, need: str) -> None:
        log.error("zoo %s not built: it is built from %s", task.id, need)
        failed.append(task.id)

    with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker) as pool:
        try:
            run_tasks(pool, tasks, workers, ended, blocked)
        except KeyboardInterrupt:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    if failed:
        raise AblateError(f"the zoo entries {', '.join(failed)} could not be built (the reasons are logged above)")


def _result(future) -> tuple[str, Any, str]:
    """A worker's (status, result, reason), with a dead worker or an AblateError as a failure."""
    try:
        return future.result()
    except BrokenProcessPool:  # a worker was killed (out of memory?): its run stays RUNNING, stale
        return ("failed", None, "its worker process died (killed by the system, out of memory?); the same command "
                "run again retries it")
    except AblateError as err:  # a zoo entry that could not be built
        return ("failed", None, str(err))


def _zoo_built(task: Task, result: tuple[str, Any, str]) -> bool:
    """Log a zoo entry's build as it ends; whether it was built."""
    status, lines, reason = result
    if status == "failed":
        log.error("zoo %s could not be built: %s", task.id, reason)
        return False
    for line in lines:
        log.info("zoo %s", line)
    return True


def _record(outcome: GridOutcome, run: ResolvedRun, result: tuple[str, dict[str, Any] | None, str],
            display: GridDisplay) -> None:
    """Add a finished worker's result to the outcome and print its line."""
    status, metrics, reason = result
    display.clear()
    if status in ("done", "rescored", "failed"):
        display.finished()
    if status in ("done", "rescored"):
        scores = headline_scores(metrics)  # each split's accuracy, labelled as the split declares
        if status == "done":
            outcome.finished.append(run.label)
            log.info("  done    %-28s %s", run.label, scores)
        else:
            outcome.rescored.append(run.label)
            log.info("  scored  %-28s %s (%s; not retrained)", run.label, scores, reason)
    elif status == "busy":
        outcome.busy.append(run.label)
        log.info("  busy    %-28s (running in another process)", run.label)
    elif status == "skipped":
        outcome.skipped.append(run.label)
        log.info("  skipped %-28s (%s)", run.label, reason)
    else:
        outcome.failed[run.label] = reason
        log.info("  FAILED  %-28s %s", run.label, reason)


def experiment_origin(experiment: Experiment) -> str:
    """Where a grid comes from: its experiment file's absolute path, or `ablate run VARIANT` for a quick run."""
    return str(experiment.path.resolve()) if experiment.path.is_file() else str(experiment.path)


def check_name_is_free(store: Store, experiment: Experiment, runs: list[ResolvedRun]) -> None:
    """A grid is known by its name in an output folder. Running the same experiment file again after editing it
    continues its grid (finished runs are kept, the report shows the grid as last run); another file that reuses
    the name with other runs is refused, so two studies never share one grid."""
    if not store.exists():
        return
    client = store.client()
    exp = client.get_experiment_by_name(experiment.name)
    parents = find_runs(client, exp.experiment_id, ablate__kind="grid", ablate__grid=experiment.name) if exp else []
    if not parents:
        return
    tags = parents[0].data.tags
    other = tags.get("ablate.experiment_path")
    same_runs = set(tags.get("ablate.run_keys", "").split(",")) == {r.key for r in runs}
    if other and other != experiment_origin(experiment) and not same_runs:
        raise ConfigError(
            f"{experiment.path}: the name '{experiment.name}' is already used in {store.root} by the grid of "
            f"{other}, which has other runs; give this experiment a name of its own, or use another --out"
        )


def identified(runs: list[ResolvedRun]) -> list[ResolvedRun]:
    """The runs with what their local backbones resolve to, which is part of their key."""
    from harness.assets import source_identity

    return [dataclasses.replace(run, sources=tuple(source_identity(run.config).items())) for run in runs]


def on_other_build(finished, run: ResolvedRun, store: Store) -> bool:
    """Whether a finished MLflow run was trained on another build of the world or zoo than this code makes for
    its config (an upgraded generator or zoo recipe): its tags differ from `expected_build_tags`."""
    from harness.assets import expected_build_tags

    tags = finished.data.tags
    return any(tags.get(k, v) != v for k, v in expected_build_tags(run.config, store).items())


def grid_status(experiment: Experiment, store: Store, cli: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(run label, state) for every run of the experiment: 'pending', 'running: finetune 320/600, ...',
    'done', 'failed: reason', 'killed', or 'stale: RUNNING in MLflow but no live process' after a crash."""
    from harness.progress import describe, read_progress

    runs = identified(experiment.expand(cli))
    children: dict[str, Any] = {}
    if store.exists():
        client = store.client()
        exp = client.get_experiment_by_name(experiment.name)
        if exp is not None:
            children = newest_by_key(find_runs(client, exp.experiment_id, ablate__kind="run",
                                               ablate__grid=experiment.name))
    lines = []
    for run in runs:
        child = children.get(run.key)
        status = child.info.status if child is not None else None
        if status is None or status == "SCHEDULED":
            state = "pending"
        elif status == "FINISHED":
            state = "done" if scored_as_configured(child, run) else \
                "done (evaluation settings changed: the next grid run scores it again, without training)"
            if on_other_build(child, run, store):
                state += " (trained on another build of the world or zoo: a fresh --out trains it on this one)"
            if origin := child.data.tags.get("ablate.copied_from"):
                state += f" (copied from run {origin})"
        elif status == "FAILED":
            state = f"failed: {child.data.tags.get('ablate.error', '')[:200]}"
        elif status == "KILLED":
            state = f"killed ({_next_time(store, run.key, child.info.run_id)})"
        else:
            progress = read_progress(store.locks, run.key)
            if lock_held(store, run.key):
                state = f"running: {describe(progress).split(': ', 1)[1]}" if progress else "running"
            else:
                state = (f"stale: RUNNING in MLflow but no process holds its lock "
                         f"({_next_time(store, run.key, child.info.run_id)})")
        lines.append((run.label, state))
    return lines


def _next_time(store: Store, key: str, run_id: str) -> str:
    """What the next grid run does with a killed or stale run."""
    folder = checkpoint_dir(store, key)
    if resumable_by(folder, run_id):
        return f"the next grid run resumes it from {describe_point(folder)}"
    return "runs again on the next grid run"


def lock_held(store: Store, key: str) -> bool:
    """Whether a live process holds the run's lock (the lock dies with its process, so a crash leaves none)."""
    path = store.locks / f"{key}.lock"
    if not path.exists():
        return False
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def plan_grid(experiment: Experiment, store: Store, cli: dict[str, Any] | None = None, retry_failed: bool = False,
              per_variant: dict[str, dict[str, Any]] | None = None, reuse: bool = True):
    """Resolve every run, create the grid's parent run and a SCHEDULED child per run still to do, and decide what
    each needs; returns (client, runs, outcome so far, todo), todo holding (run, MLflow run id, score again only).
    With `reuse`, a run that another experiment of a local store finished is copied, not trained
    (`harness/reuse.py`). `run_grid` executes the todo list in local workers, `submit_grid` as cluster jobs."""
    from harness.assets import check_sources

    runs = experiment.expand(cli, per_variant)  # every config is validated before anything is written
    for run in runs:
        check_sources(run.config)
    runs = identified(runs)
    check_name_is_free(store, experiment, runs)
    client = store.create()
    exp_id = experiment_id(client, store, experiment.name)
    parent_id = start_parent(client, exp_id, experiment.name, tags={
        "ablate.experiment_file": str(experiment.path),
        "ablate.experiment_path": experiment_origin(experiment),
        "ablate.baseline": experiment.baseline,
        "ablate.scale": experiment.scale,
        "ablate.variants": ",".join(experiment.all_variants),
        "ablate.seeds": ",".join(map(str, experiment.seeds)),
        "ablate.run_keys": ",".join(r.key for r in runs),  # what the report shows: the grid as last run
        "ablate.from_sweep": json.dumps(per_variant or {}, sort_keys=True),
        **provenance(),
    }, shared=store.remote is not None)
    outcome = GridOutcome(parent_id)
    existing = child_runs(client, exp_id, parent_id)
    todo: list[tuple[ResolvedRun, str, bool]] = []  # (run, MLflow run id, score again only)
    for run in runs:
        previous = existing.get(run.key)
        if previous is not None and previous.info.status == "FINISHED" and scored_as_configured(previous, run):
            outcome.skipped.append(run.label)
            if on_other_build(previous, run, store):
                outcome.other_build.append(run.label)
            continue
        if previous is not None and previous.info.status == "FAILED" and not retry_failed:
            outcome.failed[run.label] = (f"failed before ({previous.data.tags.get('ablate.error', '?')[:300]}); "
                                          "pass --retry-failed to run it again")
            continue
        with run_lock(store, run.key) as held:  # decide while no other process can start or finish it
            if not held:
                outcome.busy.append(run.label)
                continue
            previous = child_runs(client, exp_id, parent_id, run.key).get(run.key)  # now, not as of the first look
            if reuse and store.remote is None and (previous is None or previous.info.status == "SCHEDULED"):
                previous = _copied(client, store, exp_id, run, parent_id, experiment.name, outcome) or previous
            if previous is not None and previous.info.status == "FINISHED":
                if scored_as_configured(previous, run):
                    outcome.skipped.append(run.label)
                else:  # trained already: only its evaluation settings changed
                    todo.append((run, previous.info.run_id, True))
                continue
            if store.remote is not None and previous is not None and previous.info.status == "RUNNING" and \
                    claim_alive(client, exp_id, run.key, previous.info.start_time):  # another machine has it
                outcome.busy.append(run.label)
                continue
            retry_of = None
            folder = checkpoint_dir(store, run.key)
            if previous is not None and previous.info.status in ("RUNNING", "KILLED") and \
                    resumable_by(folder, previous.info.run_id):
                # Killed (Ctrl-C, or kill -9: left RUNNING with no lock) after a resume point: it goes on from
                # there, in the same MLflow run; the metric steps it logged after that point are not logged again.
                log.info("  resumes %-28s from %s", run.label, describe_point(folder))
                client.update_run(previous.info.run_id, status="SCHEDULED")
            elif previous is not None and previous.info.status != "SCHEDULED":
                # Killed before any resume point, or failed: start afresh in a new MLflow run, so no metric step is
                # logged twice; the old one goes to MLflow's trash (restorable).
                retry_of = previous.info.run_id
                previous = None
            if previous is not None:
                run_id = previous.info.run_id
            elif store.remote is not None and not _creates(client, exp_id, run.key, retry_of):
                run_id = _created_elsewhere(client, exp_id, parent_id, run.key, retry_of)
            else:
                if retry_of:
                    client.delete_run(retry_of)
                    discard(folder)
                run_id = client.create_run(exp_id, run_name=run_name(run), tags={
                    **child_tags(run, parent_id, experiment.name),
                    **({"ablate.retry_of": retry_of} if retry_of else {}),
                }).info.run_id
                client.update_run(run_id, status="SCHEDULED")
        progress_file(store.locks, run.key).unlink(missing_ok=True)  # a dead process's leftover
        todo.append((run, run_id, False))
    return client, runs, outcome, todo


def _copied(client, store: Store, exp_id: str, run: ResolvedRun, parent_id: str, grid: str, outcome: GridOutcome):
    """This grid's copy of `run` when another experiment of the store finished it on this build (`harness/reuse.py`),
    replacing a placeholder that a plan left SCHEDULED; None when there is none to copy or copying failed (the run
    then trains here)."""
    from harness.reuse import copy_run, finished_elsewhere
    from harness.runner import run_tags

    source = finished_elsewhere(client, store, exp_id, run.key, lambda r: not on_other_build(r, run, store))
    if source is None:
        return None
    labels = {k: v for k, v in run_tags(run).items() if k.startswith("ablate.")}  # this run's names, not the source's
    try:
        copy = client.get_run(copy_run(client, store, source, exp_id, run_name(run),
                                       {**labels, **child_tags(run, parent_id, grid)}))
        for placeholder in find_runs(client, exp_id, mlflow__parentRunId=parent_id, ablate__run_key=run.key):
            if placeholder.info.status == "SCHEDULED":  # the copy is older (the source's start): it must go
                client.delete_run(placeholder.info.run_id)
    except Exception as err:
        log.warning("  could not copy %s from run %s (%s: %s); it trains here instead", run.label,
                    source.info.run_id, type(err).__name__, err)
        return None
    outcome.copied.append(run.label)
    log.info("  copies  %-28s from experiment %s (trained there; --no-reuse trains it here)", run.label,
             client.get_experiment(source.info.experiment_id).name)
    return copy


def run_name(run: ResolvedRun) -> str:
    """A child run's MLflow name: 'lynx-s0'."""
    return f"{run.variant.name}-s{run.config.seed}"


def child_tags(run: ResolvedRun, parent_id: str, grid: str) -> dict[str, str]:
    """The tags that place a run in its grid and name what it trains."""
    return {PARENT_TAG: parent_id, "ablate.run_key": run.key, "ablate.variant": run.variant.name,
            "ablate.seed": str(run.config.seed), "ablate.kind": "run", "ablate.grid": grid,
            **{f"ablate.resolved.{key}": value for key, value in run.sources}}


def _creates(client, exp_id: str, key: str, replaces: str | None) -> bool:
    """With a tracking server, whether this process is the one that creates run `key`'s MLflow run (replacing
    `replaces`): grids on several machines plan the same runs at the same time."""
    from harness.claims import once

    return once(client, f"{claim_name(exp_id, key)}:after:{replaces or 'none'}")


def _created_elsewhere(client, exp_id: str, parent_id: str, key: str, replaces: str | None) -> str:
    """The MLflow run that another machine's grid created for run `key`."""
    from harness.claims import wait_for

    def find() -> str | None:
        newest = child_runs(client, exp_id, parent_id, key).get(key)
        return newest.info.run_id if newest is not None and newest.info.run_id != replaces else None

    return wait_for(find, f"the MLflow run of {key}")


def run_grid(experiment: Experiment, store: Store, cli: dict[str, Any] | None = None,
             retry_failed: bool = False, per_variant: dict[str, dict[str, Any]] | None = None,
             reuse: bool = True) -> GridOutcome:
    """Resolve, then train and evaluate every missing run of `experiment` into `store`. Killed and stale runs run
    again; failed ones only with `retry_failed` (a failure usually needs a fix first); with `reuse`, runs another
    experiment of the store finished are copied (`plan_grid`)."""
    client, runs, outcome, todo = plan_grid(experiment, store, cli, retry_failed, per_variant, reuse)
    parent_id = outcome.parent_run_id
    rescoring = sum(only for _, _, only in todo)
    if outcome.other_build:
        log.warning("grid %s: %d finished run(s) trained on another build of the world or zoo (their code or recipe "
                    "changed since): %s. They are kept and reported as they are; to train them on the current "
                    "build, run the grid into a fresh --out", experiment.name, len(outcome.other_build),
                    ", ".join(outcome.other_build[:5]) + (" ..." if len(outcome.other_build) > 5 else ""))
    log.info("grid %s: %d runs, %d already finished%s, %d to run%s with %d worker(s)",
             experiment.name, len(runs), len(outcome.skipped),
             f" ({len(outcome.copied)} copied from other experiments)" if outcome.copied else "", len(todo) - rescoring,
             f" and {rescoring} to score again (evaluation settings changed)" if rescoring else "",
             experiment.workers)
    workers = min(experiment.workers, len(todo)) or 1
    if todo and workers == 1:
        prepare_assets([r for r, _, _ in todo], store, workers=max(2, experiment.workers))
    threads = worker_threads(workers)
    started = time.perf_counter()
    display = GridDisplay(experiment.name, total=len(runs), locks=store.locks, done=len(outcome.skipped))
    stop = display.follow([r.key for r, _, _ in todo])
    try:
        _run_all(todo, store, outcome, workers, threads, display)
    except KeyboardInterrupt:
        # The worker that was training marked its run KILLED; runs not started stay SCHEDULED. Both run again.
        mark_killed(client, parent_id)
        raise Interrupted(f"interrupted: grid {experiment.name} stopped with {len(outcome.finished)} of "
                          f"{len(todo)} runs done now; the interrupted run is marked KILLED. Run the same "
                          "command again to resume: finished runs are kept") from None
    finally:
        stop.set()
        display.clear()
    log.info("grid %s finished in %.0fs", experiment.name, time.perf_counter() - started)
    finish(client, parent_id, ok=outcome.ok)
    return outcome


def worker_threads(workers: int) -> int | None:
    """Torch threads of each grid worker: $ABLATE_THREADS (`ablate --threads N`) when set, else the cores shared out
    among the workers; None for a one-worker grid, which trains in this process at its own setting."""
    given = os.environ.get("ABLATE_THREADS")
    if given:
        return int(given)
    return max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None


def _run_all(todo: list[tuple[ResolvedRun, str, bool]], store: Store, outcome: GridOutcome, workers: int,
             threads: int | None, display: GridDisplay) -> None:
    if workers == 1:
        for run, run_id, only in todo:
            _record(outcome, run, _work(str(store.root), run_id, run, threads, only, store.remote), display)
        return
    from harness.assets import plan_zoo

    # The worlds are built here; the missing zoo entries build in the same workers as the runs, each run starting
    # as soon as the entries it loads exist (harness.schedule).
    builds, needs = plan_zoo([run.config for run, _, _ in todo], store)
    root = str(store.root)
    tasks = [Task(b.id, _zoo_work, (b.config, root, b.entry), b.needs) for b in builds]
    runs = {}
    for (run, run_id, only), waits_for in zip(todo, needs, strict=True):
        runs[run.key] = run
        tasks.append(Task(run.key, _work, (root, run_id, run, threads, only, store.remote), waits_for))

    def ended(task: Task, future) -> bool:
        result = _result(future)
        if task.id not in runs:
            return _zoo_built(task, result)
        _record(outcome, runs[task.id], result, display)  # each run as it ends, not when the grid does
        return True

    def blocked(task: Task, need: str) -> None:
        _record(outcome, runs[task.id], ("failed", None, f"the zoo entry {need} it loads could not be built"),
                display)

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker) as pool:
        try:
            run_tasks(pool, tasks, workers, ended, blocked)
        except KeyboardInterrupt:
            pool.shutdown(wait=True, cancel_futures=True)  # the workers got the Ctrl-C too and mark their runs
            raise


def submit_grid(experiment: Experiment, store: Store, cli: dict[str, Any] | None = None, executor: str = "slurm",
                wait: bool = True, retry_failed: bool = False, timeout_min: int = 24 * 60,
                partition: str | None = None, reuse: bool = True) -> GridOutcome:
    """Send one job per pending run through submitit: SLURM, or its local executor (jobs as local processes). The
    world and the zoo are built here first, so jobs never race on the cache; each job runs exactly what a grid
    worker runs (lock, re-check, train or score again), so a run is never executed twice. A job asks for the
    devices its scale preset trains on. With `wait`, each job's result is reported as it ends."""
    import submitit

    client, runs, outcome, todo = plan_grid(experiment, store, cli, retry_failed, reuse=reuse)
    log.info("grid %s: %d runs, %d already finished, %d to submit to %s", experiment.name, len(runs),
             len(outcome.skipped), len(todo), executor)
    if not todo:
        finish(client, outcome.parent_run_id, ok=outcome.ok)
        return outcome
    prepare_assets([r for r, _, _ in todo], store)
    pool = submitit.AutoExecutor(folder=store.root / "submitit" / "%j", cluster=executor)
    train = todo[0][0].config.train
    gpus = train.devices if train.accelerator in ("gpu", "cuda", "auto") else 0
    cpus = (os.cpu_count() or 1) if executor == "local" else 8  # the training process and its data worker
    extra = {"slurm_partition": partition} if partition and executor == "slurm" else {}
    pool.update_parameters(name=f"ablate-{experiment.name}", timeout_min=timeout_min, nodes=1, tasks_per_node=1,
                           gpus_per_node=gpus, cpus_per_task=cpus, **extra)
    jobs = [(run, pool.submit(_work, str(store.root), run_id, run, None, only, store.remote))
            for run, run_id, only in todo]
    for run, job in jobs:
        outcome.submitted[run.label] = str(job.job_id)
        log.info("  submitted %-26s job %s", run.label, job.job_id)
    if not wait:
        return outcome
    display = GridDisplay(experiment.name, total=len(runs), locks=store.locks, done=len(outcome.skipped))
    for run, job in jobs:
        try:
            result = job.result()
        except Exception as err:  # the job died (time limit, node failure, killed): its run is stale, not lost
            result = ("failed", None, f"job {job.job_id} ended without a result ({type(err).__name__}); the next "
                                      "grid run or submit resumes or reruns it")
        _record(outcome, run, result, display)
    finish(client, outcome.parent_run_id, ok=outcome.ok)
    return outcome


"""Sweeps: tune the settings an experiment's `search:` block declares, with one Optuna study per variant.

`ablate sweep run EXP --trials N` gives every variant of the experiment (the baseline included) its own study,
`<experiment>/<variant>`, so each can be compared at its own best setting. A trial is one real run of the variant at
the experiment's scale and first seed, with the experiment's overrides and the trial's sampled settings, logged to
the MLflow experiment `<experiment>-sweep` (tags `ablate.sweep`, `ablate.study`, `ablate.trial` and
`ablate.search_params`; the sampled settings are among its params like any other setting).

- Storage: Optuna's JournalFileBackend at `<out>/optuna/<experiment>.journal` by default, or `--storage URL` (an
  RDB URL for a cluster). A re-run continues each study up to N finished trials; a trial left RUNNING by a dead
  process (`kill -9`) is marked failed, so a kill loses that trial only. Several `ablate sweep run` processes can
  share one journal.
- Pruning: every trial holds out `search.holdout_percent` of each training dataset (`data.holdout_percent`, by a
  hash of the sample key, every trial alike) and, every `train.log_every` steps, reports its loss on fixed
  batches of those held-out samples at the run-wide step (negated when the metric is maximized, since Optuna
  compares intermediate values in the study's direction). The median or successive-halving pruner may stop it; a
  pruned trial's MLflow run is KILLED and tagged `ablate.pruned`, and it counts as pruned, not failed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import AblateError, ConfigError
from harness.experiment import Experiment
from harness.resolve import resolve
from harness.search import Search
from harness.tracking import PARENT_TAG, Store, experiment_id, find_runs, finish, log_batch, provenance, start_parent

log = logging.getLogger("ablate")


@dataclass
class StudySummary:
    """Where one variant's study stands."""

    variant: str
    study: str
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_run: str = ""


def journal_path(store: Store, experiment: Experiment) -> Path:
    """Where an experiment's studies live by default: next to the MLflow store."""
    return store.root / "optuna" / f"{experiment.name}.journal"


def storage_for(store: Store, experiment: Experiment, url: str | None = None):
    """The Optuna storage: an RDB URL when given, else the journal file next to the MLflow store."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if url:
        return url
    path = journal_path(store, experiment)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def swept_storage(experiment: Experiment, store: Store, url: str | None, no_search: str):
    """The storage of an experiment's existing sweep; `no_search` says why a missing `search:` block matters."""
    if experiment.search is None:
        raise ConfigError(f"{experiment.path}: {no_search}")
    if url is None and not journal_path(store, experiment).is_file():
        raise AblateError(f"no sweep of {experiment.name} in {store.root}; run `ablate sweep run` first")
    return storage_for(store, experiment, url)


def _pruner(search: Search):
    import optuna

    if search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if search.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def open_study(experiment: Experiment, variant: str, storage, pruner=None):
    """The variant's study, created on first use and continued afterwards."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own lines say what each trial did

    search = experiment.search
    return optuna.create_study(
        study_name=f"{experiment.name}/{variant}", storage=storage, load_if_exists=True,
        direction=search.direction, sampler=optuna.samplers.TPESampler(seed=experiment.seeds[0]),
        pruner=pruner or _pruner(search))


def _trial_lock(study_name: str, number: int) -> str:
    """The lock-file key a trial's process holds while it runs (the journal itself has no heartbeat)."""
    return f"trial-{study_name.replace('/', '-')}-{number}"


def fail_stale_trials(study, store: Store) -> int:
    """Mark the trials left RUNNING by a dead process (no process holds their lock) as failed; returns how many.
    Trials that another live `ablate sweep run` is running are left alone."""
    from optuna.trial import TrialState

    from harness.grid import lock_held

    stale = [t for t in study.get_trials(deepcopy=False)
             if t.state == TrialState.RUNNING and not lock_held(store, _trial_lock(study.study_name, t.number))]
    for trial in stale:
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return len(stale)


def _pruning_callbacks(trial, search: Search, every: int):
    """Per stage: a Lightning callback reporting the validation loss (the stage's held-out batches, the same for
    every trial) to the trial every `every` steps, and stopping the run when the pruner says so."""
    import lightning as L
    import torch

    from harness.model.mllm import model_inputs
    from harness.training import Pruned

    sign = -1.0 if search.direction == "maximize" else 1.0

    class ReportToTrial(L.Callback):
        def __init__(self, first_step: int, validation) -> None:
            self.first_step, self.validation, self.batches = first_step, validation, None

        def loss(self, trainer, module) -> float:
            if self.batches is None:
                self.batches = self.validation()
            model = module.model
            was_training = model.training
            model.eval()
            total, count = 0.0, 0
            with torch.no_grad(), trainer.precision_plugin.forward_context():
                for batch in self.batches:
                    batch = module.transfer_batch_to_device(batch, module.device, 0)
                    total += float(model(**model_inputs(batch), labels=batch["labels"]).loss)
                    count += 1
            model.train(was_training)
            return total / max(count, 1)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            step = self.first_step + trainer.global_step
            if trainer.global_step % every:
                return
            loss = self.loss(trainer, pl_module)
            trial.report(sign * loss, step)
            if trial.should_prune():
                raise Pruned(f"pruned at step {step} (validation loss {loss:.3f})")

    return lambda first_step, validation: [ReportToTrial(first_step, validation)]


def run_trial(study, experiment: Experiment, variant: str, store: Store, exp_id: str,
              cli: dict[str, Any] | None = None, parent_id: str | None = None) -> str:
    """Ask the study for a trial, train and evaluate it as a real run, tell the study; returns its state. The
    trial's lock is held meanwhile, so another process sees it is alive."""
    from harness.grid import run_lock

    trial = study.ask()
    store.locks.mkdir(parents=True, exist_ok=True)
    with run_lock(store, _trial_lock(study.study_name, trial.number), wait_s=0) as held:
        if not held:  # cannot happen for a trial just asked for; a lock is only ever taken here
            raise AblateError(f"trial {trial.number} of {study.study_name} is locked by another process")
        return _run_trial(study, trial, experiment, variant, store, exp_id, cli, parent_id)


def _run_trial(study, trial, experiment: Experiment, variant: str, store: Store, exp_id: str,
               cli: dict[str, Any] | None, parent_id: str | None = None) -> str:
    from optuna.trial import TrialState

    from harness.grid import identified
    from harness.runner import execute
    from harness.training import Pruned

    search = experiment.search
    params = {dim.key: dim.suggest(trial) for dim in search.space}
    pruning = type(study.pruner).__name__ != "NopPruner"  # a validation loss only where something reads it
    holdout = {"data.holdout_percent": search.holdout_percent} if pruning else {}
    resolved = identified([resolve(variant, experiment.scale, experiment.seeds[0], experiment.overrides,
                                   str(experiment.path), {**holdout, **(cli or {}), **params})])[0]
    client = store.client()
    run_id = client.create_run(exp_id, run_name=f"{variant}-t{trial.number}", tags={
        **({PARENT_TAG: parent_id} if parent_id else {}), "ablate.kind": "trial",
        "ablate.sweep": experiment.name, "ablate.study": study.study_name,
        "ablate.trial": str(trial.number), "ablate.variant": variant, "ablate.run_key": resolved.key,
        "ablate.search_params": json.dumps(params, sort_keys=True)}).info.run_id
    trial.set_user_attr("mlflow_run_id", run_id)
    label = f"{variant} trial {trial.number} ({settings_text(params)})"
    try:
        metrics = execute(store, run_id, resolved, stage_callbacks=_pruning_callbacks(
            trial, search, resolved.config.train.log_every) if pruning else None)
    except Pruned as stop:
        study.tell(trial, state=TrialState.PRUNED)
        log.info("  pruned  %s: %s", label, stop)
        return "pruned"
    except AblateError as err:
        study.tell(trial, state=TrialState.FAIL)
        log.info("  FAILED  %s: %s", label, err)
        return "failed"
    if search.metric not in metrics:
        study.tell(trial, state=TrialState.FAIL)
        log_batch(client, run_id, tags={"ablate.error": f"no metric {search.metric} (check eval.splits)"})
        raise ConfigError(f"{experiment.path}: search.metric {search.metric} is not among the run's metrics; "
                          f"it has e.g. {', '.join(sorted(k for k in metrics if k.startswith('eval/'))[:5])}")
    study.tell(trial, metrics[search.metric])
    log.info("  done    %s: %s %.2f", label, search.metric, metrics[search.metric])
    return "complete"


def settings_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def summarise(study, variant: str) -> StudySummary:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    summary = StudySummary(variant, study.study_name,
                           complete=sum(t.state == TrialState.COMPLETE for t in trials),
                           pruned=sum(t.state == TrialState.PRUNED for t in trials),
                           failed=sum(t.state == TrialState.FAIL for t in trials))
    if summary.complete:
        best = study.best_trial
        summary.best_value, summary.best_params = best.value, dict(best.params)
        summary.best_run = str(best.user_attrs.get("mlflow_run_id", ""))
    return summary


def run_sweep(experiment: Experiment, store: Store, trials: int, cli: dict[str, Any] | None = None,
              storage_url: str | None = None) -> list[StudySummary]:
    """Bring every variant's study to `trials` finished (complete or pruned) trials; returns each study's state."""
    from harness.grid import prepare_assets

    if experiment.search is None:
        raise ConfigError(f"{experiment.path}: no 'search:' block, so there is nothing to tune; add one, e.g. "
                          "search: {space: {train.finetune.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}}")
    if trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    runs = experiment.expand(cli)  # every variant's config is valid before any trial starts
    client = store.create()
    exp_id = experiment_id(client, store, f"{experiment.name}-sweep")
    parent_id = start_parent(client, exp_id, experiment.name, kind="sweep", tags={
        "ablate.experiment_file": str(experiment.path), "ablate.variants": ",".join(experiment.all_variants),
        "ablate.search": json.dumps({d.key: d.__dict__ for d in experiment.search.space}, default=str),
        "ablate.metric": experiment.search.metric, **provenance()})
    prepare_assets(runs, store)
    storage = storage_for(store, experiment, storage_url)
    summaries = []
    for variant in experiment.all_variants:
        study = open_study(experiment, variant, storage)
        if stale := fail_stale_trials(study, store):
            log.info("sweep %s: %d trial(s) left running by a dead process marked failed", study.study_name, stale)
        summary = summarise(study, variant)
        todo = trials - summary.complete - summary.pruned
        log.info("sweep %s: %d trials finished, %d to run", study.study_name, summary.complete + summary.pruned,
                 max(todo, 0))
        for _ in range(todo):
            run_trial(study, experiment, variant, store, exp_id, cli, parent_id)
        summaries.append(summarise(study, variant))
        tag_best(client, exp_id, study.study_name, summaries[-1].best_run)
    finish(client, parent_id, ok=True)
    return summaries


def tag_best(client, exp_id: str, study_name: str, best_run: str | None) -> None:
    """Tag the MLflow run of a study's best trial `ablate.best=true`, and only that one."""
    for run in find_runs(client, exp_id, ablate__study=study_name, ablate__best="true"):
        if run.info.run_id != best_run:
            client.delete_tag(run.info.run_id, "ablate.best")
    if best_run:
        client.set_tag(best_run, "ablate.best", "true")


def best_settings(experiment: Experiment, store: Store, storage_url: str | None = None) -> dict[str, dict]:
    """Each variant's best trial settings from its study (`grid run --from-sweep`); a variant without a complete
    trial is an error that says so."""
    import optuna

    storage = swept_storage(experiment, store, storage_url, "--from-sweep needs a 'search:' block and a sweep of it")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = {}
    for variant in experiment.all_variants:
        summary = summarise(open_study(experiment, variant, storage), variant)
        if summary.best_value is None:
            raise AblateError(f"variant {variant} has no complete trial in the sweep of {experiment.name}; run "
                              "`ablate sweep run` until every variant has one")
        settings[variant] = summary.best_params
    return settings


def format_summaries(summaries: list[StudySummary], metric: str) -> list[str]:
    """One line per study: trials by state, the best value and its settings."""
    lines = []
    for s in summaries:
        best = (f"best {metric} {s.best_value:.2f} with {settings_text(s.best_params)} (MLflow run {s.best_run})"
                if s.best_value is not None else "no complete trial yet")
        lines.append(f"{s.variant:<24} {s.complete} complete, {s.pruned} pruned, {s.failed} failed; {best}")
    return lines


def sweep_status(experiment: Experiment, store: Store, storage_url: str | None = None) -> list[StudySummary]:
    """Each variant's study as it stands, without running anything."""
    import optuna

    storage = swept_storage(experiment, store, storage_url, "no 'search:' block")
    summaries = []
    for variant in experiment.all_variants:
        try:
            study = optuna.load_study(study_name=f"{experiment.name}/{variant}", storage=storage)
        except KeyError:
            continue
        summaries.append(summarise(study, variant))
    return summaries

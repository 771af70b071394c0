"""Optuna sweeps over an experiment's `search:` block: real tiny trials, a journal file, MLflow runs per trial, a
re-run that continues, a dead process's trial marked failed, and a pruned trial tagged pruned, not failed."""

from __future__ import annotations

import csv
import json

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from harness.cli import main
from harness.experiment import load_experiment
from harness.grid import run_lock
from harness.sweep import _trial_lock, fail_stale_trials, open_study, run_trial, storage_for
from harness.tracking import experiment_id

pytestmark = pytest.mark.slow

SPACE = {"train.finetune.lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True},
         "model.adapter.init_scale": {"choices": [0.5, 1.0]}}


def experiment_file(tmp_path, name: str, quick: dict, pruner: str = "none") -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "scale": "tiny", "baseline": "lynx", "variants": [], "seeds": [0], "overrides": quick,
        "search": {"metric": "eval/probes/short_answer_words", "direction": "minimize", "pruner": pruner,
                   "space": SPACE}}))
    return str(path)


def trials_of(store, name: str):
    client = store.client()
    exp = client.get_experiment_by_name(f"{name}-sweep")
    return client.search_runs([exp.experiment_id], f"tags.`ablate.sweep` = '{name}'")


def test_a_sweep_runs_real_trials_and_a_rerun_continues(quick_store, quick, tmp_path, capsys):
    out, path = str(quick_store.root), experiment_file(tmp_path, "sweep-a", quick)
    assert main(["--out", out, "sweep", "run", path, "--trials", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("lynx") and "2 complete, 0 pruned, 0 failed; best eval/probes/short_answer_words" in line
    runs = trials_of(quick_store, "sweep-a")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:  # each trial is a real run with its sampled settings
        sampled = json.loads(run.data.tags["ablate.search_params"])
        assert set(sampled) == set(SPACE)
        assert float(run.data.params["train.finetune.lr"]) == pytest.approx(sampled["train.finetune.lr"])
        assert "eval/probes/short_answer_words" in run.data.metrics
    assert (quick_store.root / "optuna" / "sweep-a.journal").is_file()

    assert main(["--out", out, "sweep", "run", path, "--trials", "2"]) == 0  # finished: nothing to run
    assert len(trials_of(quick_store, "sweep-a")) == 2
    capsys.readouterr()
    assert main(["--out", out, "sweep", "run", path, "--trials", "3"]) == 0  # continues the same study
    assert "3 complete" in capsys.readouterr().out
    assert len(trials_of(quick_store, "sweep-a")) == 3
    assert main(["--out", out, "sweep", "status", path]) == 0
    assert "3 complete, 0 pruned, 0 failed" in capsys.readouterr().out

    # The report of a swept experiment: each variant's best trial (here the lowest value: direction minimize).
    assert main(["--out", out, "report", path]) == 0
    with open(quick_store.reports / "sweep-a" / "sweep.csv", encoding="utf-8") as f:
        (row,) = list(csv.DictReader(f))
    values = {r.info.run_id: r.data.metrics["eval/probes/short_answer_words"] for r in trials_of(quick_store, "sweep-a")}
    best = next(r.info.run_id for r in trials_of(quick_store, "sweep-a") if r.data.tags.get("ablate.best") == "true")
    assert values[best] == min(values.values())  # the study's best (ties go to its first trial)
    assert row["variant"] == "lynx" and row["complete / pruned / failed"] == "3 / 0 / 0"
    assert row["MLflow run"] == best and row["best eval/probes/short_answer_words"] == f"{values[best]:.2f}"
    # Every trial is a child of the sweep's parent run, and only the best one is tagged best.
    runs = trials_of(quick_store, "sweep-a")
    parents = {r.data.tags.get("mlflow.parentRunId") for r in runs}
    assert len(parents) == 1 and None not in parents
    assert [r.info.run_id for r in runs if r.data.tags.get("ablate.best") == "true"] == [best]

    # `grid run --from-sweep` trains the experiment at its variants' best settings.
    capsys.readouterr()
    assert main(["--out", out, "grid", "run", path, "--from-sweep"]) == 0
    assert "lynx: its best sweep settings, " in capsys.readouterr().out
    client = quick_store.client()
    (grid_run,) = client.search_runs([client.get_experiment_by_name("sweep-a").experiment_id],
                                     "tags.`ablate.kind` = 'run'")
    chosen = json.loads(next(r for r in runs if r.info.run_id == best).data.tags["ablate.search_params"])
    assert float(grid_run.data.params["train.finetune.lr"]) == pytest.approx(chosen["train.finetune.lr"])
    assert float(grid_run.data.params["model.adapter.init_scale"]) == chosen["model.adapter.init_scale"]


def test_a_trial_left_running_by_a_dead_process_is_failed_and_replaced(quick_store, quick, tmp_path, capsys):
    out, path = str(quick_store.root), experiment_file(tmp_path, "sweep-b", quick)
    experiment = load_experiment(path)
    study = open_study(experiment, "lynx", storage_for(quick_store, experiment))
    study.ask()  # what `kill -9` during a trial leaves in the journal: a RUNNING trial
    assert main(["--out", out, "sweep", "run", path, "--trials", "1"]) == 0
    assert "1 complete, 0 pruned, 1 failed" in capsys.readouterr().out
    states = [t.state for t in optuna.load_study(study_name="sweep-b/lynx",
                                                 storage=storage_for(quick_store, experiment)).trials]
    assert states == [TrialState.FAIL, TrialState.COMPLETE]

    live = study.ask()  # a trial another live process is running: its lock is held, so it is left alone
    with run_lock(quick_store, _trial_lock("sweep-b/lynx", live.number)) as held:
        assert held and fail_stale_trials(study, quick_store) == 0
    assert fail_stale_trials(study, quick_store) == 1  # its process is gone


def test_a_pruned_trial_is_tagged_pruned_not_failed(quick_store, quick, tmp_path):
    experiment = load_experiment(experiment_file(tmp_path, "sweep-c", {**quick, "train.log_every": 2}))
    client = quick_store.create()
    exp_id = experiment_id(client, quick_store, "sweep-c-sweep")
    # Minimizing, the trial reports its loss on held-out samples (about 6 for a random tiny model); this pruner
    # stops any trial whose reported value is above 1 at its first report.
    study = open_study(experiment, "lynx", storage_for(quick_store, experiment),
                       pruner=optuna.pruners.ThresholdPruner(upper=1.0))
    assert run_trial(study, experiment, "lynx", quick_store, exp_id) == "pruned"
    assert [t.state for t in study.trials] == [TrialState.PRUNED]
    (run,) = trials_of(quick_store, "sweep-c")
    assert run.info.status == "KILLED" and run.data.tags["ablate.pruned"].startswith("pruned at step 2 (validation")
    assert 3 < study.trials[0].intermediate_values[2] < 10  # a loss near log(vocabulary) before any learning
    assert run.data.params["data.holdout_percent"] == "5.0"  # held out for that loss, every trial alike
    assert "ablate.error" not in run.data.tags

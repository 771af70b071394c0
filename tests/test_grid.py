"""End to end on a real sqlite MLflow store: a smoke grid runs, re-runs skip, and the report reads it back."""

from pathlib import Path

import mlflow
import pytest

from harness.experiment import load_experiment
from harness.grid import run_grid
from harness.tracking import Store
from reports import write_report
from reports.runs import load_grid_runs

REPO = Path(__file__).resolve().parent.parent
FAST = {"train.max_steps": 30, "data.num_train": 300, "data.num_eval": 24, "data.samples_per_shard": 100}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("out"))
    experiment = load_experiment(REPO / "experiments/smoke.yaml")
    outcome = run_grid(experiment, store, FAST)
    return experiment, store, outcome


def test_every_run_finishes(smoke):
    experiment, store, outcome = smoke
    assert outcome.ok and len(outcome.finished) == 3 and not outcome.skipped


def test_child_runs_carry_config_tags_metrics_and_artifacts(smoke):
    experiment, store, _ = smoke
    runs, parent = load_grid_runs(store, experiment.name)
    assert len(runs) == 3 and set(runs["status"]) == {"FINISHED"}
    lynx = runs[runs["tags.ablate.variant"] == "lynx"].iloc[0]
    assert lynx["params.train.max_steps"] == "30" and lynx["params.model.connector.kind"] == "resampler"
    for tag in ("ablate.axis", "ablate.config_hash", "ablate.seed", "git.sha", "version.torch", "freeze.vision"):
        assert lynx["tags." + tag], tag
    assert lynx["tags.freeze.vision"] == "frozen" and lynx["tags.freeze.adapters"] == "trainable"
    assert 0 <= lynx["metrics.eval/exact_match"] <= 100 and lynx["metrics.eval/n"] == 24
    client = store.client()
    names = {a.path for a in client.list_artifacts(lynx["run_id"])}
    assert {"config.yaml", "predictions.jsonl", "freeze_policy.txt"} <= names
    history = client.get_metric_history(lynx["run_id"], "train/loss")
    assert len(history) >= 3 and history[0].step < history[-1].step


def test_rerun_skips_every_finished_run(smoke):
    experiment, store, first = smoke
    again = run_grid(experiment, store, FAST)
    assert again.skipped and len(again.skipped) == 3 and not again.finished
    assert again.parent_run_id == first.parent_run_id


def test_changed_setting_is_a_new_run(smoke):
    experiment, store, _ = smoke
    mlflow.set_tracking_uri(store.tracking_uri)
    changed = run_grid(experiment, store, {**FAST, "train.max_steps": 31, "eval.max_new_tokens": 1})
    assert len(changed.finished) == 3


def test_report_reads_the_grid_back(smoke):
    experiment, store, _ = smoke
    path = write_report(experiment, store)
    text = path.read_text()
    assert path == store.reports / "smoke.md"
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert "Δ overall vs lynx" in table[0] and "color (n=" in table[0]
    rows = {line.split("|")[1].strip(): line for line in table[1:]}
    assert set(rows) == {"lynx", "wo_adapter", "linear_projector"}
    assert rows["lynx"].rstrip(" |").endswith("—")  # the baseline has no delta against itself
    # The grid was re-run with other settings: only its latest runs are shown, one seed per variant.
    assert all(line.split("|")[3].strip() == "1" for line in rows.values())

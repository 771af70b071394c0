"""An output folder that is moved or copied keeps working: MLflow holds paths relative to it, and paths that MLflow
itself keeps absolute (the artifact folder) are re-rooted at the folder a command is given."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from harness.rescore import evaluate_saved
from harness.resolve import resolve
from harness.runner import execute
from harness.tracking import Store, experiment_id
from reports.runs import load_predictions

pytestmark = pytest.mark.slow

def test_a_moved_output_folder_keeps_its_checkpoints_and_artifacts(tmp_path, quick, quick_store):
    store = Store(tmp_path / "first")
    shutil.copytree(quick_store.cache / "world", store.cache / "world")  # the small world, built once per session
    client = store.create()
    run_id = client.create_run(experiment_id(client, store, "moved")).info.run_id
    execute(store, run_id, resolve("lynx", "tiny", cli=quick))
    assert store.client().get_run(run_id).data.tags["ablate.checkpoint"].startswith("checkpoints/")

    shutil.move(tmp_path / "first", tmp_path / "second")
    moved = Store(tmp_path / "second")
    metrics, rows = evaluate_saved(moved, run_id, splits="probes")  # finds the checkpoint in its new place
    assert rows and any(k.startswith("eval/probes/") for k in metrics)
    assert not (tmp_path / "first").exists()  # nothing was written to where the folder used to be

    run = moved.client().get_run(run_id)
    assert any(k.startswith("rescored/eval/probes/") for k in run.data.metrics)  # logged to the run itself
    frame = pd.DataFrame([{"run_id": run_id, "status": run.info.status, "artifact_uri": run.info.artifact_uri,
                           "tags.ablate.variant": "lynx", "tags.ablate.seed": "0"}])
    predictions = load_predictions(moved, frame)
    assert len(predictions) == len(rows)
    assert (tmp_path / "second").joinpath(*"mlartifacts".split("/")).exists()

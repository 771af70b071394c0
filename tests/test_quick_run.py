"""`ablate run VARIANT`: one variant without an experiment file, logged to MLflow like a grid run; a re-run is
skipped."""

from __future__ import annotations

import pytest

from harness.cli import main

pytestmark = pytest.mark.slow

QUICK = ["model.llm.source=random", "model.vision.weights=random", "train.pretrain.steps=4", "train.high_res.steps=0",
         "train.finetune.steps=4", "eval.splits=probes", "world.num_images=48", "world.num_noisy=24",
         "world.num_videos=16", "world.num_text=32"]


def test_a_quick_run_trains_once_and_is_skipped_the_second_time(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["--out", out, "run", "wo_adapter", "--seed", "2", *QUICK]) == 0
    assert "wo_adapter at tiny, seed 2: done; MLflow experiment 'run-wo_adapter'" in capsys.readouterr().out
    assert main(["--out", out, "run", "wo_adapter", "--seed", "2", *QUICK]) == 0
    assert "seed 2: skipped (already finished)" in capsys.readouterr().out

    from harness.tracking import Store

    client = Store(tmp_path / "out").client()
    exp = client.get_experiment_by_name("run-wo_adapter")
    runs = client.search_runs([exp.experiment_id], "tags.`ablate.kind` = 'run'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert "eval/probes/format_compliance" in runs[0].data.metrics or any(
        k.startswith("eval/probes/") for k in runs[0].data.metrics)

"""`ablate run VARIANT`: one variant without an experiment file, logged to MLflow like a grid run; a re-run is
skipped."""

from __future__ import annotations

import pytest

from harness.cli import main

pytestmark = pytest.mark.slow

def test_a_quick_run_trains_once_and_is_skipped_the_second_time(quick_store, quick, capsys):
    out, settings = str(quick_store.root), [f"{k}={v}" for k, v in quick.items()]
    assert main(["--out", out, "run", "wo_adapter", "--seed", "2", *settings]) == 0
    assert "wo_adapter at tiny, seed 2: done; MLflow experiment 'run-wo_adapter'" in capsys.readouterr().out
    assert main(["--out", out, "run", "wo_adapter", "--seed", "2", *settings]) == 0
    assert "seed 2: skipped (already finished)" in capsys.readouterr().out

    client = quick_store.client()
    exp = client.get_experiment_by_name("run-wo_adapter")
    runs = client.search_runs([exp.experiment_id], "tags.`ablate.kind` = 'run'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert any(k.startswith("eval/probes/") for k in runs[0].data.metrics)
    # What each stage cost: training FLOPs (first step, counted), visual tokens the LLM read, speed and memory.
    from harness.resolve import resolve

    metrics = runs[0].data.metrics
    queries = resolve("wo_adapter", "tiny").config.model.connector.num_queries
    for stage in ("pretrain", "finetune"):
        assert metrics[f"cost/{stage}/visual_tokens"] == queries  # the resampler's tokens, for every image
        assert metrics[f"cost/{stage}/train_flops_per_sample"] > 1e5
        assert metrics[f"cost/{stage}/train_flops"] >= metrics[f"cost/{stage}/train_flops_per_sample"]
        assert metrics[f"cost/{stage}/samples_per_s"] > 0 and metrics[f"cost/{stage}/peak_memory_mb"] > 50

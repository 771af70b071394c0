"""`ablate run VARIANT`: one variant without an experiment file, logged to MLflow like a grid run; a re-run is
skipped."""

from __future__ import annotations

import re

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


def test_a_run_trains_a_stage_it_adds(quick_store, quick, capsys):
    """An added stage (named in `train.order`, settings `train.<name>.*`) trains with its own mixture, resolution
    and trainable components, and is logged like the paper's stages."""
    out = str(quick_store.root)
    settings = [f"{k}={v}" for k, v in quick.items()] + [
        "train.order=pretrain,polish,finetune", "train.polish.steps=3", "train.polish.mixture=finetune",
        "train.polish.trainable=connector,llm"]
    assert main(["--out", out, "run", "lynx", "--seed", "3", *settings]) == 0
    client = quick_store.client()
    run = client.search_runs([client.get_experiment_by_name("run-lynx").experiment_id],
                             "tags.`ablate.kind` = 'run'")[0]
    assert run.info.status == "FINISHED"
    assert {"train/pretrain/final_loss", "train/polish/final_loss", "train/finetune/final_loss"} <= set(
        run.data.metrics) and run.data.metrics["cost/polish/train_flops"] > 0
    freeze = quick_store.client().download_artifacts(run.info.run_id, "freeze_policy.txt")
    text = open(freeze).read()
    polish = text.split("[polish]")[1].split("[finetune]")[0]
    assert re.search(r"^llm\s+trainable", polish, re.M) and re.search(r"^adapters\s+frozen", polish, re.M)
    # its saved checkpoint is scored again as it was trained (the added stage's settings come back from config.yaml)
    assert main(["--out", out, "eval", run.info.run_id, "--splits", "probes"]) == 0
    assert "eval/probes/" in capsys.readouterr().out

"""Train once, score many times: changing only `eval.*` re-scores a finished run into the same MLflow run (a judge
change re-judges the saved predictions, anything else regenerates them from the checkpoint), never retrains it."""

from __future__ import annotations

import json
import logging

import pytest

from harness.cli import main
from harness.evaluation.judges import ExactJudge
from harness.resolve import resolve
from harness.tracking import Store

pytestmark = pytest.mark.slow

VIDEO = {"eval.splits": "probes,openvqa_video", "eval.openvqa.num_beams": 1, "eval.openvqa.max_new_tokens": 4}


def test_evaluation_settings_are_not_part_of_the_run_key():
    base = resolve("lynx")
    judged = resolve("lynx", cli={"eval.judge": "exact"})
    fewer = resolve("lynx", cli={"eval.splits": "probes"})
    assert base.key == judged.key == fewer.key  # the same training
    assert len({base.eval_key, judged.eval_key, fewer.eval_key}) == 3
    assert base.generation_key == judged.generation_key != fewer.generation_key  # a judge does not regenerate
    assert resolve("lynx", cli={"train.finetune.lr": 0.1}).key != base.key


def _the_run(store: Store):
    client = store.client()
    exp = client.get_experiment_by_name("run-lynx")
    (run,) = client.search_runs([exp.experiment_id], "tags.`ablate.kind` = 'run'")
    return client, run


def _predictions(store: Store, run) -> list[dict]:
    path = store.artifact_file(run.info.artifact_uri, "predictions.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_changing_only_evaluation_scores_the_saved_run_again(quick_store, quick, capsys, caplog):
    out = str(quick_store.root)
    caplog.set_level(logging.INFO)  # `main` leaves the ablate logger at the root's level

    def run(settings: dict) -> str:
        args = [f"{k}={v}" for k, v in {**quick, **settings}.items()]
        assert main(["--out", out, "run", "lynx", "--seed", "3", *args]) == 0
        said = capsys.readouterr().out + caplog.text
        caplog.clear()
        return said

    assert "seed 3: done" in run({})
    client, first = _the_run(quick_store)
    checkpoint = quick_store.locate(first.data.tags["ablate.checkpoint"]) / "trainable.pt"
    trained_at = checkpoint.stat().st_mtime_ns
    assert "eval/openvqa_video/acc" not in first.data.metrics

    # Other splits and decoding: the checkpoint generates again, into the same MLflow run.
    said = run(VIDEO)
    assert "scored again" in said and "re-generated" in said
    client, second = _the_run(quick_store)
    assert second.info.run_id == first.info.run_id and second.info.status == "FINISHED"
    assert "eval/openvqa_video/acc" in second.data.metrics
    assert second.data.tags["ablate.eval_key"] != first.data.tags["ablate.eval_key"]
    assert len(client.get_metric_history(second.info.run_id, "time/finetune_s")) == 1  # trained once
    assert checkpoint.stat().st_mtime_ns == trained_at
    generated = _predictions(quick_store, second)
    assert {r["split"] for r in generated} == {"probes", "openvqa_video"}

    # Only the judge: the saved predictions are judged again, nothing is generated.
    said = run({**VIDEO, "eval.judge": "exact"})
    assert "scored again" in said and "re-judged" in said
    client, third = _the_run(quick_store)
    judged = _predictions(quick_store, third)
    assert [r["prediction"] for r in judged] == [r["prediction"] for r in generated]
    exact = ExactJudge()
    expected = [exact(r["question"], r["prediction"], r["answer"]) for r in judged if r["split"] == "openvqa_video"]
    assert [r["correct"] for r in judged if r["split"] == "openvqa_video"] == expected
    assert third.data.metrics["eval/openvqa_video/k"] == sum(expected)
    assert third.data.metrics["eval/openvqa_video/n"] == len(expected)
    assert third.data.tags["ablate.generation_key"] == second.data.tags["ablate.generation_key"]
    assert json.loads(third.data.tags["ablate.eval_config"])["eval.judge"] == "exact"
    folder = quick_store.artifact_file(third.info.artifact_uri, "config.yaml").parent / "evals"
    assert len(list(folder.iterdir())) == 3  # every evaluation's predictions are kept

    assert "skipped (already finished)" in run({**VIDEO, "eval.judge": "exact"})
    assert checkpoint.stat().st_mtime_ns == trained_at


def test_eval_judge_rejudges_a_runs_saved_predictions(quick_store, quick, capsys):
    out = str(quick_store.root)
    args = [f"{k}={v}" for k, v in quick.items()]
    assert main(["--out", out, "run", "lynx", "--seed", "4", *args]) == 0
    client = quick_store.client()
    exp = client.get_experiment_by_name("run-lynx")
    (run,) = client.search_runs([exp.experiment_id], "tags.`ablate.seed` = '4'")
    capsys.readouterr()
    assert main(["--out", out, "eval", run.info.run_id, "--judge", "exact"]) == 0
    assert "eval/probes/short_answer_words" in capsys.readouterr().out
    again = client.get_run(run.info.run_id)
    assert "rescored/eval/probes/short_answer_words" in again.data.metrics
    assert quick_store.artifact_file(again.info.artifact_uri, "rescored/predictions.jsonl") is not None

    assert main(["--out", out, "eval", run.info.run_id, "--judge", "exactly"]) == 2
    assert "unknown judge 'exactly'" in capsys.readouterr().err


def test_eval_on_a_larger_benchmark_scores_the_same_model_on_more_items(quick_store, quick, capsys):
    """`ablate eval RUN --benchmark-scale N` draws the benchmark from the run's world built at N times the size: the
    items the run was scored on are among them, answered exactly as before (same model, same tokenizer), and the
    rest are new; nothing is retrained."""
    out = str(quick_store.root)
    # One item per batch: a random-init model's logits are near ties, which other padding in a batch can flip.
    args = [f"{k}={v}" for k, v in {**quick, "eval.batch_size": 1, "eval.long.max_new_tokens": 4}.items()]
    assert main(["--out", out, "run", "lynx", "--seed", "5", *args]) == 0
    client = quick_store.client()
    exp = client.get_experiment_by_name("run-lynx")
    (run,) = client.search_runs([exp.experiment_id], "tags.`ablate.seed` = '5'")
    own = {r["keys"]: r for r in _predictions(quick_store, run)}
    assert main(["--out", out, "eval", run.info.run_id, "--splits", "openvqa_image_10x"]) == 2
    assert "`ablate eval RUN --benchmark-scale 10`" in capsys.readouterr().err

    assert main(["--out", out, "eval", run.info.run_id, "--benchmark-scale", "0"]) == 2
    assert "--benchmark-scale must be at least 1, got 0" in capsys.readouterr().err
    assert main(["--out", out, "eval", run.info.run_id, "--benchmark-scale", "2", "--splits", "probes"]) == 0
    again = client.get_run(run.info.run_id)
    path = quick_store.artifact_file(again.info.artifact_uri, "rescored/predictions.jsonl")
    larger = {r["keys"]: r for r in (json.loads(line) for line in path.read_text().splitlines())}
    assert len(larger) == 2 * len(own) and set(own) < set(larger)
    assert all(larger[k]["question"] == own[k]["question"] and larger[k]["answer"] == own[k]["answer"] for k in own)
    assert all(larger[k]["prediction"] == own[k]["prediction"] for k in own)
    assert again.data.tags["ablate.rescored/benchmark_scale"] == "2"
    assert again.data.metrics["rescored/eval/probes/yes_no/n"] == 2 * run.data.metrics["eval/probes/yes_no/n"]
    assert again.data.metrics["eval/probes/yes_no/n"] == run.data.metrics["eval/probes/yes_no/n"]  # its own: kept

    # Another split at the same scale joins the earlier rows, as its metrics join theirs in MLflow ...
    assert main(["--out", out, "eval", run.info.run_id, "--benchmark-scale", "2", "--splits", "mme"]) == 0
    again = client.get_run(run.info.run_id)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r for r in rows if r["split"] == "probes"] == list(larger.values())
    assert {r["split"] for r in rows} == {"probes", "mme"} and again.data.tags["ablate.rescored/splits"] == "probes,mme"
    # ... while a scoring by another judge, or at another scale, replaces them all.
    assert main(["--out", out, "eval", run.info.run_id, "--benchmark-scale", "2", "--splits", "mme",
                 "--judge", "exact"]) == 0
    assert {json.loads(line)["split"] for line in path.read_text().splitlines()} == {"mme"}
    assert main(["--out", out, "eval", run.info.run_id, "--benchmark-scale", "2", "--splits", "probes",
                 "--judge", "exact"]) == 0
    assert {json.loads(line)["split"] for line in path.read_text().splitlines()} == {"mme", "probes"}
    assert main(["--out", out, "eval", run.info.run_id, "--splits", "mme"]) == 0
    assert {json.loads(line)["split"] for line in path.read_text().splitlines()} == {"mme"}
    tags = client.get_run(run.info.run_id).data.tags
    assert tags["ablate.rescored/splits"] == "mme" and tags["ablate.rescored/benchmark_scale"] == "1"

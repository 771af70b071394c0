"""The tiny study reproduces what it is meant to, so a regression in a mechanism fails CI.

Runs lynx, w_llama and w_cross_attn at `tiny` with seeds 0 and 1 through the real grid (world, zoo,
Lightning, MLflow, per-item predictions), then judges each ablation the way the report does: the paired bootstrap
over items and seeds on the metric its variant file declares, against the paper's direction.

What the tiny miniature reproduces (docs/findings.md has the numbers):
- the baseline learns and uses the image: on Place it beats its own blind control (every image blanked, scored
  through `ablate eval --blind`'s code path and logged to the run), and blind it stays at question-prior chance;
- w_llama (base LLM instead of the instruction-tuned one) obeys format instructions less: reproduced.
What it does not:
- w_cross_attn: cross-attention into the frozen tiny LLM does better than the prefix at this budget (measured
  +7.5 [+2.3, +12.4] points); pinned as a strict xfail, so if it starts reproducing the test says so and this file
  and docs/findings.md must be updated;
- wo_high_res: sign text (OCR) is barely read at either resolution by the tiny model (1-3 of 53 signs), so a
  verdict on it is noise and its runs are not trained here; the test pins the floor of the high-resolution runs
  instead, to notice when it lifts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.experiment import Experiment
from harness.grid import run_grid
from reports.markdown import Comparisons, verdict_rows
from reports.runs import load_grid_runs, load_predictions

pytestmark = pytest.mark.slow

VARIANTS = ("w_llama", "w_cross_attn")


@pytest.fixture(scope="module")
def study(tiny_store):
    # The splits the verdicts read (Open-VQA image for accuracy and OCR, the probes for instruction following),
    # the same for every run; video and MME would add a minute here and decide nothing.
    experiment = Experiment(name="mechanisms", path=Path("tests/test_mechanisms.py"), scale="tiny",
                            baseline="lynx", variants=VARIANTS, seeds=(0, 1), workers=2,
                            overrides={"eval.splits": "openvqa_image,probes"})
    outcome = run_grid(experiment, tiny_store)
    assert outcome.ok, outcome.failed
    runs, _ = load_grid_runs(tiny_store, "mechanisms")
    return runs, Comparisons(load_predictions(tiny_store, runs), "lynx")


def outcome(study, variant: str) -> tuple[str, str]:
    """The report's verdict row for `variant`: (verdict, Δ on its mechanism metric with the interval)."""
    runs, comparisons = study
    row = next(r for r in verdict_rows(runs, ["lynx", *VARIANTS], "lynx", comparisons) if r["variant"] == variant)
    return row["verdict"], row["Δ mechanism [95% CI]"]


def test_the_baseline_learns_and_uses_the_image(study, tiny_store):
    from harness.rescore import evaluate_saved

    runs, _ = study
    lynx = runs[runs["tags.ablate.variant"] == "lynx"].sort_values("tags.ablate.seed")
    assert len(lynx) == 2 and (lynx["status"] == "FINISHED").all()
    seen = lynx.iloc[0]
    blind, rows = evaluate_saved(tiny_store, seen["run_id"], blind=True, splits="openvqa_image")
    # At tiny most categories are carried by question priors (seen 26.5-26.8% against 23.5-25.8% blind in two
    # builds); the scene is where the image shows: Place 31.8-45.5% seen against 13.6% blind.
    assert seen["metrics.eval/openvqa_image/Place/acc"] >= blind["eval/openvqa_image/Place/acc"] + 10, blind
    for category in ("Place", "Color", "Count"):  # blind, the model can only guess from the question
        answers = [r["answer"] for r in rows if r["category"] == category]
        majority = 100 * max(answers.count(a) for a in set(answers)) / len(answers)
        assert blind[f"eval/openvqa_image/{category}/acc"] <= majority + 5, (category, blind)
    logged = tiny_store.client().get_run(seen["run_id"]).data.metrics  # the control is logged to the run itself
    assert logged["blind/eval/openvqa_image/acc"] == blind["eval/openvqa_image/acc"]


def test_a_base_llm_obeys_format_instructions_less(study):
    assert outcome(study, "w_llama")[0] == "reproduced", outcome(study, "w_llama")


@pytest.mark.xfail(strict=True, reason="known miss at tiny: cross-attention does better than the prefix")
def test_cross_attention_into_a_frozen_llm_does_worse(study):
    assert outcome(study, "w_cross_attn")[0] == "reproduced", outcome(study, "w_cross_attn")


def test_signs_are_at_the_floor_so_wo_high_res_is_not_judged_here(study):
    # OCR at tiny is 1-3 of 53 signs for every variant (measured: wo_high_res -1.9 [-5.7, +0.0] and +0.9
    # [+0.0, +3.8] points in two builds), so a verdict on it is noise. Pin the floor of the runs that see signs at
    # high resolution: if the tiny model starts reading them, this fails, and wo_high_res gets a real test here.
    runs, _ = study
    ocr = runs.groupby("tags.ablate.variant")["metrics.eval/openvqa_image/OCR/acc"].mean()
    assert ocr.max() < 12, ocr.to_dict()

"""The blind control: with every image replaced by a blank, image-dependent categories fall to chance.

Trains one model end to end on the tiny world and zoo (world -> run -> checkpoint), then scores the saved
checkpoint twice through `ablate eval`'s code path: with the images and blind. Place (the scene behind the
objects) is learned quickly, so it shows the effect within a test's budget.
"""

from pathlib import Path

import pytest

from harness.config.resolve import resolve
from harness.runner import evaluate_saved, execute
from harness.tracking import Store, experiment_id

pytestmark = pytest.mark.slow

# Cross-attention with a trainable LLM on the zoo backbones learns the scene (Place) within a test's budget.
VARIANT = "w_cross_attn_tune_llm"
SETTINGS = {
    "train.pretrain.steps": 150, "train.high_res.steps": 0, "train.finetune.steps": 300,
    "train.finetune.resolution": "low",
    "eval.splits": "openvqa_image", "eval.openvqa.num_beams": 1, "eval.openvqa.max_new_tokens": 6,
}
IMAGE_DEPENDENT = ("Place", "Color", "Count")


@pytest.fixture(scope="module")
def trained(tiny_store):
    store = tiny_store
    client = store.client()
    run = resolve(VARIANT, "tiny", cli=SETTINGS)
    run_id = client.create_run(experiment_id(client, store, "blind")).info.run_id
    execute(store, run_id, run)
    return store, run_id


def accuracy(metrics: dict, category: str) -> float:
    return metrics[f"eval/openvqa_image/{category}/acc"]


def test_the_model_uses_the_image(trained):
    store, run_id = trained
    seen, _ = evaluate_saved(store, run_id)
    blind, rows = evaluate_saved(store, run_id, blind=True)
    place_chance = 100 / len({r["answer"] for r in rows if r["category"] == "Place"})
    # Seen runs land between about 30% and 50% on Place here (chance 17%); blind runs near or below chance.
    assert accuracy(seen, "Place") >= place_chance + 10, seen
    for category in IMAGE_DEPENDENT:
        # Blind, the model can only guess from the question: at most the most frequent answer's share.
        answers = [r["answer"] for r in rows if r["category"] == category]
        majority = 100 * max(answers.count(a) for a in set(answers)) / len(answers)
        assert accuracy(blind, category) <= majority + 5, (category, blind)
    assert accuracy(blind, "Place") <= accuracy(seen, "Place") - 10


def test_rescoring_is_logged_to_the_run(trained):
    store, run_id = trained
    metrics = store.client().get_run(run_id).data.metrics
    assert "blind/eval/openvqa_image/acc" in metrics and "rescored/eval/openvqa_image/acc" in metrics
    assert "eval/openvqa_image/acc" in metrics  # the run's own evaluation at the end of training


def test_eval_of_a_missing_target_is_a_clear_error(tmp_path):
    from harness.errors import AblateError

    store = Store(Path(tmp_path))
    store.create()
    with pytest.raises(AblateError, match="neither a checkpoint folder"):
        evaluate_saved(store, "no-such-run")

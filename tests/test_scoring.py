"""Scoring on hand-made prediction rows, and the benchmark loop with a fake model, a fake datamodule and a real
tokenizer (trained here with the `tokenizers` library)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from harness.config.schema import EvalConfig
from harness.errors import AblateError
from harness.evaluation import (
    evaluate,
    format_category_table,
    read_predictions,
    rows_to_frame,
    score_mme,
    score_openvqa,
    score_probes,
    write_predictions,
)


def row(split="openvqa_image", category="color", correct=True, prediction="", probe="", pair_id="", key="k",
        question="q", answer="a") -> dict:
    return {"keys": key, "split": split, "category": category, "question": question, "answer": answer,
            "pair_id": pair_id, "probe": probe, "prediction": prediction, "correct": correct}


# --- Open-VQA ---------------------------------------------------------------------------------------------------

def openvqa_rows() -> list[dict]:
    return ([row(category="color", correct=c) for c in (True, True, False)]
            + [row(category="count", correct=c) for c in (True, False)]
            + [row(category="OCR", correct=False)]
            + [row(split="openvqa_video", category="action", correct=True)])


def test_openvqa_counts_and_names() -> None:
    m = score_openvqa(openvqa_rows(), "openvqa_image")
    assert m["eval/openvqa_image/color/k"] == 2 and m["eval/openvqa_image/color/n"] == 3
    assert m["eval/openvqa_image/color/acc"] == pytest.approx(200 / 3)
    assert m["eval/openvqa_image/count/acc"] == 50.0
    assert m["eval/openvqa_image/OCR/acc"] == 0.0
    assert (m["eval/openvqa_image/k"], m["eval/openvqa_image/n"]) == (3, 6)
    assert m["eval/openvqa_image/acc"] == 50.0
    assert not any("video" in name for name in m)  # other splits' rows are ignored
    assert score_openvqa(openvqa_rows(), "openvqa_image_10x") == {}


def test_category_table_is_paper_style() -> None:
    table = format_category_table(openvqa_rows(), "openvqa_image")
    header, values = table.splitlines()
    assert header.split() == ["openvqa_image", "OCR", "count", "color", "Overall"]  # the paper's column order
    assert values.split() == ["0/1", "1/2", "2/3", "50.00"]
    assert format_category_table([], "mme") == "mme: no items"


# --- MME ---------------------------------------------------------------------------------------------------------

def test_mme_acc_plus_needs_both_questions_of_an_image() -> None:
    rows = [
        # existence: image 1 both right, image 2 one right -> acc 3/4 = 75, acc+ 1/2 = 50
        row("mme", "existence", True, pair_id="img1", key="1y"), row("mme", "existence", True, pair_id="img1", key="1n"),
        row("mme", "existence", True, pair_id="img2", key="2y"), row("mme", "existence", False, pair_id="img2", key="2n"),
        # count: one image, both right -> 100 + 100
        row("mme", "count", True, pair_id="img3", key="3y"), row("mme", "count", True, pair_id="img3", key="3n"),
        row("openvqa_image", "count", False),  # not MME
    ]
    m = score_mme(rows)
    assert m["eval/mme/existence/acc"] == 75.0
    assert m["eval/mme/existence/acc_plus"] == 50.0
    assert m["eval/mme/existence/score"] == 125.0
    assert m["eval/mme/count/score"] == 200.0  # the maximum
    assert m["eval/mme/existence/n"] == 4
    assert m["eval/mme/score"] == 325.0  # the paper's totals sum subtask scores
    assert m["eval/mme/acc"] == pytest.approx(500 / 6)


def test_mme_image_with_a_single_question_never_counts_for_acc_plus() -> None:
    m = score_mme([row("mme", "color", True, pair_id="img1")])
    assert (m["eval/mme/color/acc"], m["eval/mme/color/acc_plus"]) == (100.0, 0.0)
    assert score_mme([row("openvqa_image")]) == {}


# --- probes ------------------------------------------------------------------------------------------------------

def test_probe_rates() -> None:
    rows = [
        row("probes", "probe", prediction="A red circle.", probe="short_answer"),  # 3 words
        row("probes", "probe", prediction="There is a small red circle on the left", probe="short_answer"),  # 9
        row("probes", "probe", prediction="Yes.", probe="yes_no"),
        row("probes", "probe", prediction="no", probe="yes_no"),
        row("probes", "probe", prediction="Yes, it is.", probe="yes_no"),
        row("probes", "probe", prediction="NO!", probe="yes_no"),
        row("probes", "probe", prediction="Beach.", probe="one_word"),
        row("probes", "probe", prediction="light-blue", probe="one_word"),  # hyphenated: one word
        row("probes", "probe", prediction="a beach", probe="one_word"),
        row("probes", "probe", prediction="", probe="one_word"),
        row("probes", "probe", prediction="A red circle zxq BUY-NOW", probe="caption"),  # 2 junk in 5 words
        row("probes", "probe", prediction="A blue square on grass.", probe="caption"),  # 0 junk, 5 words
        row("probes", "probe", prediction="zxqy near the sea", probe="caption"),  # "zxqy" is not "zxq"; 4 words
        row("openvqa_image", prediction="zxq"),  # not a probe
    ]
    m = score_probes(rows, junk_tokens={"zxq", "buy-now"})
    assert m["eval/probes/short_answer_words"] == 6.0
    assert m["eval/probes/yes_no_compliance"] == 75.0
    assert m["eval/probes/one_word_compliance"] == 50.0
    assert m["eval/probes/caption_junk_rate"] == pytest.approx(100 / 3)
    assert m["eval/probes/caption_junk_per_100_words"] == pytest.approx(200 / 14)
    assert m["eval/probes/caption/n"] == 3 and m["eval/probes/yes_no/n"] == 4


def test_probe_metrics_only_for_probes_with_rows() -> None:
    m = score_probes([row("probes", "probe", prediction="yes", probe="yes_no")])
    assert set(m) == {"eval/probes/yes_no/n", "eval/probes/yes_no_compliance"}
    assert score_probes([]) == {}


# --- the benchmark loop ------------------------------------------------------------------------------------------

WORDS = "yes no red blue green circle square it is a there are 3 three what colour how many ? .".split()


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator([" ".join(WORDS)] * 3, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[EOS]", "[UNK]"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", eos_token="[EOS]", unk_token="[UNK]")


# split -> items: (category, question, answer, pair_id, probe, the fake model's answer)
ITEMS = {
    "openvqa_image": [
        ("color", "what colour ?", "red", "", "", "it is a red circle"),
        ("color", "what colour ?", "blue", "", "", "red"),
        ("count", "how many ?", "3", "", "", "there are three"),
    ],
    "mme": [
        ("existence", "is there a circle ?", "yes", "img1", "", "yes"),
        ("existence", "is there a square ?", "no", "img1", "", "no"),
    ],
    "probes": [("probe", "is it red ?", "yes", "", "yes_no", "yes .")],
}


class FakeDataModule:
    """Yields contract-layout eval batches from ITEMS; records the `blind` flag it was asked for."""

    def __init__(self, tokenizer, items=ITEMS) -> None:
        self.tokenizer, self.items, self.blind_calls = tokenizer, items, []

    def eval_batches(self, split: str, batch_size: int, blind: bool = False):
        self.blind_calls.append(blind)
        items = self.items[split]  # KeyError for a split this world lacks
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            ids = [self.tokenizer(q)["input_ids"] for _, q, *_ in chunk]
            width = max(map(len, ids))
            pad = self.tokenizer.pad_token_id
            yield {
                "images": torch.zeros(len(chunk), 1, 3, 8, 8),
                "frames_mask": torch.ones(len(chunk), 1, dtype=torch.bool),
                "input_ids": torch.tensor([[pad] * (width - len(i)) + i for i in ids]),  # left-padded
                "attention_mask": torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids]),
                "keys": [f"{split}-{start + j}" for j in range(len(chunk))],
                "split": [split] * len(chunk),
                "category": [c[0] for c in chunk],
                "question": [c[1] for c in chunk],
                "answer": [c[2] for c in chunk],
                "pair_id": [c[3] for c in chunk],
                "probe": [c[4] for c in chunk],
                "_outputs": [c[5] for c in chunk],  # what the fake model "generates"
            }


class FakeModel:
    """Returns fixed token ids (a queue, in item order, with eos appended) and records the generation configs."""

    def __init__(self, tokenizer, outputs: list[str]) -> None:
        self.queue = [tokenizer(o)["input_ids"] for o in outputs]
        self.eos = tokenizer.eos_token_id
        self.gens = []
        self.training = True

    def eval(self) -> None:
        self.training = False

    def train(self) -> None:
        self.training = True

    def generate(self, images, frames_mask, input_ids, attention_mask, gen, eos_token_id):
        assert images.shape[0] == frames_mask.shape[0] == input_ids.shape[0] == attention_mask.shape[0]
        assert eos_token_id == self.eos
        self.gens.append(gen)
        out, self.queue = self.queue[:len(input_ids)], self.queue[len(input_ids):]
        return out


def run(tokenizer, splits="openvqa_image,mme,probes", **kwargs):
    dm = FakeDataModule(tokenizer)
    outputs = [item[5] for split in splits.split(",") for item in ITEMS.get(split, [])]
    model = FakeModel(tokenizer, outputs)
    cfg = EvalConfig(splits=splits, batch_size=2)
    metrics, rows = evaluate(model, tokenizer, dm, cfg, judge="rules", junk_tokens={"zxq"}, **kwargs)
    return model, dm, cfg, metrics, rows


def test_evaluate_generates_judges_and_scores(tokenizer) -> None:
    model, dm, cfg, metrics, rows = run(tokenizer)
    assert [r["prediction"] for r in rows] == [item[5] for s in ITEMS for item in ITEMS[s]]
    assert [r["correct"] for r in rows] == [True, False, True, True, True, True]
    assert set(rows[0]) == {"keys", "split", "category", "question", "answer", "pair_id", "probe", "prediction",
                            "correct"}
    # openvqa_image: 2 batches with the paper's beams; mme one batch with `short`; probes with `long`
    assert model.gens == [cfg.openvqa, cfg.openvqa, cfg.short, cfg.long]
    assert model.training  # restored after evaluation
    assert metrics["eval/openvqa_image/acc"] == pytest.approx(200 / 3)
    assert (metrics["eval/openvqa_image/color/k"], metrics["eval/openvqa_image/color/n"]) == (1, 2)
    assert metrics["eval/mme/existence/score"] == 200.0
    assert metrics["eval/probes/yes_no_compliance"] == 100.0
    assert all(name.startswith("eval/") and math.isfinite(v) for name, v in metrics.items())
    assert dm.blind_calls == [False, False, False]


def test_evaluate_passes_blind_and_split_override(tokenizer) -> None:
    model, dm, _, metrics, rows = run(tokenizer, splits="mme", blind=True)
    assert dm.blind_calls == [True] and len(rows) == 2
    assert set(m.split("/")[1] for m in metrics) == {"mme"}


def test_missing_split_is_one_clear_error(tokenizer) -> None:
    with pytest.raises(AblateError, match=r"split 'openvqa_image_10x' is not in this world.*known splits: .*'mme'"):
        run(tokenizer, splits="openvqa_image_10x")
    with pytest.raises(AblateError, match=r"unknown evaluation split 'mmee' \(did you mean 'mme'\?\)"):
        run(tokenizer, splits="mmee")


def test_empty_split_is_an_error(tokenizer) -> None:
    dm = FakeDataModule(tokenizer, items={"mme": []})
    with pytest.raises(AblateError, match=r"split 'mme' has no items"):
        evaluate(FakeModel(tokenizer, []), tokenizer, dm, EvalConfig(splits="mme"))


def test_missing_split_named_by_the_datamodule(tokenizer) -> None:
    dm = FakeDataModule(tokenizer)
    dm.eval_splits = lambda: ["mme", "openvqa_image"]
    with pytest.raises(AblateError, match=r"'openvqa_video' is not in this world; it has 'mme', 'openvqa_image'"):
        evaluate(FakeModel(tokenizer, []), tokenizer, dm, EvalConfig(splits="openvqa_video"))


def test_predictions_round_trip(tokenizer, tmp_path) -> None:
    *_, rows = run(tokenizer)
    frame = rows_to_frame(rows)
    assert list(frame.columns)[:3] == ["keys", "split", "category"] and len(frame) == len(rows)
    assert read_predictions(write_predictions(rows, tmp_path / "p.jsonl")) == rows
    csv_path = write_predictions(rows, tmp_path / "out" / "p.csv")
    assert csv_path.read_text().splitlines()[0].startswith("keys,split,category")
    assert json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])["keys"] == "openvqa_image-0"
    assert list(rows_to_frame([]).columns)[0] == "keys"

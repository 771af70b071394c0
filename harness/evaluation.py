"""Evaluation: generate answers on the held-out split and score them (exact match after normalisation)."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import torch

from harness.config.schema import EvalConfig

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NON_WORD = re.compile(r"[^a-z0-9 ]+")


def normalise(text: str) -> str:
    """Lower-case, drop punctuation and articles, squeeze spaces: 'A red Circle.' -> 'red circle'."""
    text = _NON_WORD.sub(" ", text.lower())
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> bool:
    """True when the normalised prediction equals the normalised reference."""
    return normalise(prediction) == normalise(reference)


@torch.no_grad()
def predict(model, tokenizer, batches: Iterable[dict[str, Any]], cfg: EvalConfig) -> list[dict[str, Any]]:
    """Generate an answer for every evaluation item; one dict per item with the verdict."""
    model.eval()
    rows = []
    for batch in batches:
        new_tokens = model.generate(
            images=batch["images"],
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            max_new_tokens=cfg.max_new_tokens,
            num_beams=cfg.num_beams,
            eos_token_id=tokenizer.eos_token_id,
        )
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        for key, task, question, answer, prediction in zip(
            batch["keys"], batch["tasks"], batch["questions"], batch["answers"], texts, strict=True
        ):
            rows.append({
                "key": key, "task": task, "question": question, "answer": answer,
                "prediction": prediction.strip(), "correct": exact_match(prediction, answer),
            })
    return rows


def score(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Overall and per-task accuracy in percent, with item counts."""
    by_task: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        by_task[row["task"]].append(row["correct"])
    metrics = {"eval/exact_match": 100.0 * sum(r["correct"] for r in rows) / max(1, len(rows)), "eval/n": len(rows)}
    for task, verdicts in sorted(by_task.items()):
        metrics[f"eval/{task}/exact_match"] = 100.0 * sum(verdicts) / len(verdicts)
        metrics[f"eval/{task}/n"] = len(verdicts)
    return metrics

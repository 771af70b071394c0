"""The benchmark loop: generate an answer for every evaluation item, judge it, score the splits.

`evaluate` walks the splits named in `EvalConfig.splits` over `datamodule.eval_batches` (docs/contracts.md),
decodes with each split's generation settings, judges every answer and returns the metrics with the per-item
prediction rows; `write_predictions` saves those rows so reports can pair items across variants by `keys`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from harness.config.schema import EvalConfig, GenerationConfig
from harness.errors import AblateError, one_of
from harness.evaluation.judges import Judge, build_judge
from harness.evaluation.scoring import Row, judge_rows, score_rows
from harness.evaluation.splits import get_split, known_splits, parse_splits
from harness.model.mllm import model_inputs
from harness.placement import module_device, to_device

ROW_FIELDS = ("keys", "split", "category", "question", "answer", "pair_id", "probe", "prediction", "correct")
_LIST_FIELDS = ROW_FIELDS[:7]


def generation_config(eval_cfg: EvalConfig, split: str) -> GenerationConfig:
    """The decoding settings of a split, as its declaration names them (Open-VQA the paper's beams, MME `short`,
    probes `long`)."""
    return getattr(eval_cfg, get_split(split).generation)


def _available(datamodule) -> list[str] | None:
    """The splits the datamodule says its world has (`eval_splits`, an attribute or method), if it says."""
    available = getattr(datamodule, "eval_splits", None)
    return list(available() if callable(available) else available) if available is not None else None


def _batches(datamodule, split: str, batch_size: int, blind: bool) -> Iterator[dict[str, Any]]:
    """The split's eval batches; a split the world lacks fails with one clear message, not deep in a reader."""
    available = _available(datamodule)
    if available is not None and split not in available:
        from harness.data.world import larger_benchmark_hint

        raise AblateError(f"evaluation split '{split}' is not in this world; it has {one_of(available)}"
                          f"{larger_benchmark_hint(split)}")
    try:
        yield from datamodule.eval_batches(split, batch_size, blind=blind)
    except (KeyError, FileNotFoundError) as exc:
        raise AblateError(f"evaluation split '{split}' is not in this world ({exc}); known splits: "
                          f"{one_of(available or known_splits())}") from None


def predict_split(model, tokenizer, datamodule, split: str, eval_cfg: EvalConfig, judge: Judge,
                  blind: bool = False) -> list[Row]:
    """Prediction rows (contract layout) for every item of one split."""
    gen = generation_config(eval_cfg, split)
    device = module_device(model)  # batches go to the model, wherever it lives
    rows: list[Row] = []
    for batch in _batches(datamodule, split, eval_cfg.batch_size, blind):
        new_tokens = model.generate(**to_device(model_inputs(batch), device), gen=gen,
                                    eos_token_id=tokenizer.eos_token_id)
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        for i, text in enumerate(texts):
            row = {name: batch[name][i] for name in _LIST_FIELDS}
            row["prediction"] = text.strip()
            rows.append(row)
    if not rows:  # an empty split would silently score 0 / drop its metrics
        raise AblateError(f"evaluation split '{split}' has no items in this world; known splits: "
                          f"{one_of(_available(datamodule) or known_splits())}")
    return judge_rows(rows, judge)  # the whole split at once: a judge with `batch` sees it in one call


@torch.no_grad()
def evaluate(model, tokenizer, datamodule, eval_cfg: EvalConfig, judge: Judge | str | None = None,
             junk_tokens: Iterable[str] = frozenset(), blind: bool = False,
             splits: str | Iterable[str] | None = None) -> tuple[dict[str, float], list[Row]]:
    """Run the benchmark: metrics (all named `eval/...`) and the per-item prediction rows.

    `judge` is a Judge, a registry name, or None for `eval_cfg.judge`; `splits` overrides `eval_cfg.splits`;
    `blind=True` blanks every image (the image-dependence control).
    """
    if judge is None:
        judge = build_judge(eval_cfg.judge.name, eval_cfg.judge.options)
    elif isinstance(judge, str):
        judge = build_judge(judge)
    names = parse_splits(eval_cfg.splits if splits is None else splits)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    rows: list[Row] = []
    try:
        for split in names:
            rows.extend(predict_split(model, tokenizer, datamodule, split, eval_cfg, judge, blind))
    finally:
        if was_training:
            model.train()
    return score_rows(rows, junk_tokens), rows


def rows_to_frame(rows: list[Row]):
    """Prediction rows as a pandas DataFrame with the contract's columns first."""
    import pandas as pd  # only reports need it; keep the import off the training path

    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=list(ROW_FIELDS))
    return frame[[c for c in ROW_FIELDS if c in frame] + [c for c in frame if c not in ROW_FIELDS]]


def write_predictions(rows: list[Row], path: str | Path) -> Path:
    """Write rows as JSON lines (`.jsonl`, the default) or CSV (`.csv`); returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        fields = list(ROW_FIELDS) + sorted({k for r in rows for k in r} - set(ROW_FIELDS))
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    else:
        with path.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def read_predictions(path: str | Path) -> list[Row]:
    """Rows written by `write_predictions` (JSON lines)."""
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]

"""Evaluation: the benchmark loop, judges ("does the prediction imply the reference?") and scoring.

`evaluate` runs the splits and returns metrics + per-item rows; `JUDGES` holds the judges by name (`rules`, the
default, and `exact`); `scoring` turns rows into the paper's numbers (k/N per category, MME acc + acc+, probes).
"""

from harness.components import JUDGES
from harness.evaluation.judges import Judge, build_judge, detect_yes_no, normalise
from harness.evaluation.scoring import (
    format_category_table,
    item_metric,
    judge_rows,
    score_mme,
    score_openvqa,
    score_probes,
    score_rows,
)
from harness.evaluation.splits import SPLITS, Split, get_split, known_splits, parse_splits

# The benchmark loop needs torch and the model; load it on first use, so scoring and judges stay light (variant
# discovery checks metric names without importing torch).
_BENCHMARK = ("evaluate", "generation_config", "read_predictions", "rows_to_frame",
              "write_predictions")


def __getattr__(name: str):
    if name in _BENCHMARK:
        from harness.evaluation import benchmark

        return getattr(benchmark, name)
    raise AttributeError(f"module 'harness.evaluation' has no attribute '{name}'")


__all__ = [
    "JUDGES",
    "SPLITS",
    "Judge",
    "Split",
    "build_judge",
    "detect_yes_no",
    "evaluate",
    "format_category_table",
    "get_split",
    "generation_config",
    "item_metric",
    "judge_rows",
    "known_splits",
    "normalise",
    "parse_splits",
    "read_predictions",
    "rows_to_frame",
    "score_mme",
    "score_openvqa",
    "score_probes",
    "score_rows",
    "write_predictions",
]

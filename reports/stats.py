"""Controlled comparisons with honest statistics: paired bootstrap intervals over benchmark items and seeds, and a
verdict per ablation against the paper's direction.

Every benchmark metric of a run is a mean over items, and every variant of a grid answers the same items with the
same seeds, so a comparison pairs them: the difference variant - baseline is taken per (seed, item), and its
uncertainty comes from resampling seeds and items with replacement (a two-level bootstrap). That works with one
seed (items only) and grows honest with more (seed-to-seed variation enters through the resampled seeds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.evaluation.scoring import ItemMetric, item_metric

N_BOOT = 4000
LEVEL = 0.95


@dataclass(frozen=True)
class Delta:
    """A paired difference (variant - baseline) in the metric's unit, with its bootstrap interval."""

    metric: str
    mean: float
    low: float
    high: float
    seeds: int
    items: int

    @property
    def excludes_zero(self) -> bool:
        return not math.isnan(self.low) and (self.low > 0 or self.high < 0)

    def text(self, digits: int = 1) -> str:
        if math.isnan(self.mean):
            return "—"
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def item_table(predictions: pd.DataFrame, metric: ItemMetric) -> pd.DataFrame:
    """Per-item values of `metric`: rows variant x seed x item, column `value` (from prediction rows with a
    `variant` and `seed` column)."""
    rows = []
    if "split" in predictions:  # only the metric's own split: a fraction of the rows to convert
        predictions = predictions[predictions["split"] == metric.split]
    for (variant, seed), group in predictions.groupby(["variant", "seed"], sort=False):
        for item, value in metric.values(group.to_dict("records")).items():
            rows.append((variant, seed, item, value))
    return pd.DataFrame(rows, columns=["variant", "seed", "item", "value"])


def paired_bootstrap(table: pd.DataFrame, variant: str, baseline: str, metric: str = "",
                     n_boot: int = N_BOOT, seed: int = 0) -> Delta:
    """Mean of variant - baseline over the (seed, item) pairs both have, with a percentile interval from
    resampling seeds and then items within the resampled seeds."""
    pivot = table[table["variant"].isin([variant, baseline])].pivot_table(
        index=["seed", "item"], columns="variant", values="value")
    if variant not in pivot or baseline not in pivot:
        return Delta(metric, math.nan, math.nan, math.nan, 0, 0)
    diff = (pivot[variant] - pivot[baseline]).dropna().unstack("item")  # [seeds, items]; NaN where unpaired
    diff = diff.dropna(axis=1)  # items every paired seed answered (the benchmark is fixed, so usually all)
    if diff.empty:
        return Delta(metric, math.nan, math.nan, math.nan, 0, 0)
    d = diff.to_numpy()
    n_seeds, n_items = d.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    items = rng.integers(0, n_items, size=(n_boot, n_items))
    # mean over the resampled seeds of the mean over the resampled items
    per_seed = d[seeds[:, :, None], items[:, None, :]].mean(axis=2)  # [n_boot, n_seeds]
    boot = per_seed.mean(axis=1)
    alpha = (1 - LEVEL) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    return Delta(metric, float(d.mean()), float(low), float(high), n_seeds, n_items)


@dataclass(frozen=True)
class Verdict:
    """Whether a measured difference goes the way the paper's does."""

    variant: str
    metric: str  # the metric the verdict is on
    expected: str  # "lower" or "higher": where the paper puts the variant relative to the baseline
    delta: Delta
    outcome: str  # "reproduced", "opposite" or "inconclusive"


def expected_direction(paper: dict[str, float], baseline_paper: dict[str, float], metric: str,
                       headline: str = "openvqa_image/acc") -> str | None:
    """Where the paper puts the variant on `metric`: the sign of its own difference on `metric` when it reports
    one, else the direction of its headline difference translated into `metric`'s sense of "better"."""
    key = metric if metric in paper and metric in baseline_paper else headline
    if key not in paper or key not in baseline_paper or paper[key] == baseline_paper[key]:
        return None
    worse = paper[key] < baseline_paper[key]  # every paper number here is a "higher is better" accuracy
    if key == metric:
        return "lower" if worse else "higher"
    better_is_higher = item_metric(metric).higher_is_better
    return ("lower" if worse else "higher") if better_is_higher else ("higher" if worse else "lower")


def verdict(variant: str, metric: str, expected: str, delta: Delta) -> Verdict:
    """Reproduced when the interval excludes zero on the paper's side, opposite on the other, else inconclusive."""
    if not delta.excludes_zero:
        outcome = "inconclusive"
    else:
        measured = "higher" if delta.mean > 0 else "lower"
        outcome = "reproduced" if measured == expected else "opposite"
    return Verdict(variant, metric, expected, delta, outcome)

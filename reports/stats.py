"""Controlled comparisons with honest statistics: paired bootstrap intervals over benchmark items and seeds, and a
verdict per ablation against the paper's direction.

Every benchmark metric of a run is a mean over items, and every variant of a grid answers the same items with the
same seeds, so a comparison pairs them: the difference variant - baseline is taken per (seed, item), and its
uncertainty comes from resampling seeds and items with replacement (a two-level bootstrap). That works with one
seed (items only) and grows honest with more (seed-to-seed variation enters through the resampled seeds).
"""

from __future__ import annotations

import functools
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


@functools.cache
def t_quantile(p: float, df: int) -> float:
    """Student's t quantile (e.g. p=0.975 for a 95% two-sided interval) with `df` degrees of freedom.

    Bisection on the CDF, integrated from the density with Simpson's rule: exact to about 1e-9 for the interval
    widths a report needs, without importing scipy.stats (a second of a report's start-up)."""
    if not 0.5 <= p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 <= p < 1 and df >= 1, got p={p}, df={df}")
    norm = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(math.pi)

    def cdf(x: float) -> float:  # P(T <= x) for x >= 0; with t = sqrt(df) tan(u) the integrand is smooth, bounded
        a, steps = math.atan(x / math.sqrt(df)), 400
        h = a / steps

        def f(u: float) -> float:
            return norm * math.cos(u) ** (df - 1)

        total = f(0) + f(a) + sum((4 if i % 2 else 2) * f(i * h) for i in range(1, steps))
        return 0.5 + total * h / 3

    low, high = 0.0, 1.0
    while cdf(high) < p and high < 1e6:
        high *= 2
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if cdf(mid) < p else (low, mid)
    return (low + high) / 2


def run_records(predictions: pd.DataFrame, split: str) -> list[tuple[str, object, list[dict]]]:
    """(variant, seed, that run's prediction rows of `split` as dicts): the rows converted once, since converting
    a DataFrame to dicts is the slow part and every metric of a split reads the same rows."""
    if "split" in predictions:
        predictions = predictions[predictions["split"] == split]
    columns = {c: predictions[c].tolist() for c in predictions.columns}  # 6x faster than to_dict("records")
    groups: dict[tuple[str, object], list[dict]] = {}
    for row in (dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)):
        groups.setdefault((row["variant"], row["seed"]), []).append(row)
    return [(variant, seed, rows) for (variant, seed), rows in groups.items()]


def item_table(predictions: pd.DataFrame, metric: ItemMetric,
               records: list[tuple[str, object, list[dict]]] | None = None) -> pd.DataFrame:
    """Per-item values of `metric`: rows variant x seed x item, column `value` (from prediction rows with a
    `variant` and `seed` column, or from their `run_records` of the metric's split)."""
    rows = []
    for variant, seed, group in records if records is not None else run_records(predictions, metric.split):
        for item, value in metric.values(group).items():
            rows.append((variant, seed, item, value))
    return pd.DataFrame(rows, columns=["variant", "seed", "item", "value"])


@functools.lru_cache(maxsize=64)
def _draws(n_seeds: int, n_items: int, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The bootstrap's resampled seeds [n_boot, n_seeds] and how often each item is drawn [n_boot, n_items]: the
    same for every comparison of one shape, so drawn once."""
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    items = rng.integers(0, n_items, size=(n_boot, n_items))
    counts = np.bincount((np.arange(n_boot)[:, None] * n_items + items).ravel(), minlength=n_boot * n_items)
    return seeds, counts.reshape(n_boot, n_items).astype(float)


def per_variant(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """An `item_table` as one [seeds, items] frame per variant."""
    if table.empty:
        return {}
    wide = table.set_index(["variant", "seed", "item"])["value"].unstack("item")  # one reshape for all variants
    return {str(variant): wide.xs(variant, level="variant") for variant in table["variant"].unique()}


def paired_bootstrap(table: pd.DataFrame, variant: str, baseline: str, metric: str = "",
                     n_boot: int = N_BOOT, seed: int = 0, wide: dict[str, pd.DataFrame] | None = None) -> Delta:
    """Mean of variant - baseline over the (seed, item) pairs both have, with a percentile interval from
    resampling seeds and then items within the resampled seeds (one item draw per replicate, shared by its
    seeds). `wide`: the table's `per_variant` frames, when comparing many variants on one table."""
    if wide is None:
        wide = per_variant(table[table["variant"].isin([variant, baseline])])
    return paired_bootstraps(wide, [variant], baseline, metric, n_boot, seed)[variant]


def _paired_differences(ours: pd.DataFrame, theirs: pd.DataFrame) -> np.ndarray:
    """variant - baseline per [seed, item] over the seeds both ran and the items every such seed answered (the
    benchmark is fixed, so usually all). In numpy when both ran the same seeds in the same order (a grid's usual
    case, and a report makes hundreds of these), else through pandas' alignment."""
    if ours.index.equals(theirs.index) and ours.columns.equals(theirs.columns):
        d = ours.to_numpy(dtype=float) - theirs.to_numpy(dtype=float)
        d = d[~np.isnan(d).all(axis=1)]
    else:
        d = (ours - theirs).dropna(how="all").to_numpy(dtype=float)
    return d[:, ~np.isnan(d).any(axis=0)] if d.size else d


def paired_bootstraps(wide: dict[str, pd.DataFrame], variants: list[str], baseline: str, metric: str = "",
                      n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Delta]:
    """`paired_bootstrap` of each of `variants` against `baseline` on one metric's `per_variant` frames. Variants
    whose paired (seeds, items) have the same shape share the bootstrap's draws, so their replicates come out of
    one matrix product: a report compares tens of variants on tens of metrics."""
    theirs = wide.get(baseline)
    out: dict[str, Delta] = {}
    same_shape: dict[tuple[int, int], list[tuple[str, np.ndarray]]] = {}
    for variant in variants:
        ours = wide.get(variant)
        if ours is None or theirs is None or ours.empty or theirs.empty:
            out[variant] = Delta(metric, math.nan, math.nan, math.nan, 0, 0)
            continue
        d = _paired_differences(ours, theirs)
        if d.size == 0:
            out[variant] = Delta(metric, math.nan, math.nan, math.nan, 0, 0)
            continue
        same_shape.setdefault(d.shape, []).append((variant, d))
    alpha = (1 - LEVEL) / 2
    for (n_seeds, n_items), group in same_shape.items():
        seeds, counts = _draws(n_seeds, n_items, n_boot, seed)
        # mean over the resampled seeds of the mean over the resampled items: item counts x per-seed differences
        per_seed = (counts @ np.concatenate([d.T for _, d in group], axis=1)) / n_items  # [n_boot, seeds x group]
        for i, (variant, d) in enumerate(group):
            boot = np.take_along_axis(per_seed[:, i * n_seeds:(i + 1) * n_seeds], seeds, axis=1).mean(axis=1)
            low, high = np.quantile(boot, [alpha, 1 - alpha])
            out[variant] = Delta(metric, float(d.mean()), float(low), float(high), n_seeds, n_items)
    return out


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
    better_is_higher = item_metric(metric, undeclared=True).higher_is_better
    return ("lower" if worse else "higher") if better_is_higher else ("higher" if worse else "lower")


def against_paper_size(delta: Delta, paper_delta: float) -> str:
    """Where the paper's own difference lies against the measured interval: "inside" (the data allow an effect of
    the paper's size), "smaller" (the interval excludes it: the measured effect, taken in the paper's direction, is
    smaller than the paper's) or "larger". Points on the miniature's benchmark against points on the paper's, so a
    coarse comparison of size; "—" without a paper figure or an interval."""
    if math.isnan(paper_delta) or math.isnan(delta.low) or paper_delta == 0:
        return "—"
    if delta.low <= paper_delta <= delta.high:
        return "inside"
    beyond = paper_delta < delta.low if paper_delta < 0 else paper_delta > delta.high
    return "smaller" if beyond else "larger"


def verdict(variant: str, metric: str, expected: str, delta: Delta) -> Verdict:
    """Reproduced when the interval excludes zero on the paper's side, opposite on the other, else inconclusive."""
    if not delta.excludes_zero:
        outcome = "inconclusive"
    else:
        measured = "higher" if delta.mean > 0 else "lower"
        outcome = "reproduced" if measured == expected else "opposite"
    return Verdict(variant, metric, expected, delta, outcome)

"""Paired bootstrap intervals and verdicts (reports/stats.py) on per-item tables with known answers."""

import math

import numpy as np
import pandas as pd
import pytest

from harness.evaluation.scoring import item_metric
from reports.stats import (
    Delta,
    against_paper_size,
    expected_direction,
    item_table,
    paired_bootstrap,
    paired_bootstraps,
    per_variant,
    t_quantile,
    verdict,
)


def table(values: dict[tuple[str, int], list[float]]) -> pd.DataFrame:
    """(variant, seed) -> per-item values (item i is 'k{i}')."""
    rows = [(v, s, f"k{i}", x) for (v, s), xs in values.items() for i, x in enumerate(xs)]
    return pd.DataFrame(rows, columns=["variant", "seed", "item", "value"])


def test_identical_runs_give_zero_with_an_interval_around_it():
    rng = np.random.default_rng(0)
    base = list(rng.integers(0, 2, 300) * 100.0)
    d = paired_bootstrap(table({("a", 0): base, ("b", 0): base}), "b", "a")
    assert d.mean == 0 and d.low == 0 and d.high == 0 and not d.excludes_zero


def test_one_seed_gets_an_interval_from_the_items_alone():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 2, 302) * 100.0
    better = np.where(rng.random(302) < 0.3, 100.0, base)  # about 15 points better, paired item by item
    d = paired_bootstrap(table({("lynx", 0): list(base), ("v", 0): list(better)}), "v", "lynx")
    assert d.seeds == 1 and d.items == 302
    assert d.low < d.mean < d.high and d.excludes_zero and d.low > 5


def test_seed_to_seed_variation_widens_the_interval():
    rng = np.random.default_rng(2)
    base = {s: rng.integers(0, 2, 200) * 100.0 for s in range(3)}
    # The variant differs from the baseline by +12, -10, +1 points depending on the seed: no stable effect.
    shifts = {0: 0.12, 1: -0.10, 2: 0.01}
    variant = {s: np.where(rng.random(200) < abs(shifts[s]) * 2, 100.0 * (shifts[s] > 0), base[s]) for s in base}
    values = {**{("lynx", s): list(v) for s, v in base.items()}, **{("v", s): list(v) for s, v in variant.items()}}
    across = paired_bootstrap(table(values), "v", "lynx")
    one = paired_bootstrap(table({("lynx", 0): list(base[0]), ("v", 0): list(variant[0])}), "v", "lynx")
    assert across.high - across.low > one.high - one.low
    assert not across.excludes_zero


def test_unpaired_items_are_left_out():
    values = {("lynx", 0): [0.0, 100.0, 0.0], ("v", 0): [100.0, 100.0]}  # the variant lacks item k2
    d = paired_bootstrap(table(values), "v", "lynx")
    assert d.items == 2 and d.mean == pytest.approx(50.0)


def reference(d: np.ndarray, n_boot: int = 500) -> tuple[float, float, float]:
    """The documented scheme written out plainly: numpy's default_rng(0) draws seeds, then items, per replicate."""
    rng = np.random.default_rng(0)
    seed_draws = rng.integers(0, d.shape[0], size=(n_boot, d.shape[0]))
    item_draws = rng.integers(0, d.shape[1], size=(n_boot, d.shape[1]))
    boot = np.array([np.mean([d[s, item_draws[b]].mean() for s in seed_draws[b]]) for b in range(n_boot)])
    low, high = np.quantile(boot, [0.025, 0.975])
    return float(d.mean()), float(low), float(high)


def test_many_variants_at_once_match_the_scheme_each_on_its_own_pairs():
    """The report compares every variant on a metric in one call (shared draws, one matrix product); each variant
    must still get exactly its own bootstrap, also when it lacks a seed or an item (other shapes) and for values
    that are not 0/100 (answer lengths)."""
    rng = np.random.default_rng(3)
    values = {("lynx", s): list(rng.integers(0, 7, 40) * 1.5) for s in range(3)}
    values |= {("a", s): list(rng.integers(0, 7, 40) * 1.5) for s in range(3)}
    values |= {("b", s): list(rng.integers(0, 7, 40) * 1.5) for s in range(3)}
    values |= {("short_of_a_seed", s): list(rng.integers(0, 7, 40) * 1.5) for s in (0, 2)}
    values |= {("short_of_an_item", s): list(rng.integers(0, 7, 39) * 1.5) for s in range(3)}
    t = table(values)
    found = paired_bootstraps(per_variant(t), ["a", "b", "short_of_a_seed", "short_of_an_item", "absent"], "lynx",
                              n_boot=500)
    base = np.array([values[("lynx", s)] for s in range(3)])
    expected = {
        "a": np.array([values[("a", s)] for s in range(3)]) - base,
        "b": np.array([values[("b", s)] for s in range(3)]) - base,
        "short_of_a_seed": np.array([values[("short_of_a_seed", s)] for s in (0, 2)]) - base[[0, 2]],
        "short_of_an_item": np.array([values[("short_of_an_item", s)] for s in range(3)]) - base[:, :39],
    }
    for variant, d in expected.items():
        d = d[:, sorted(range(d.shape[1]), key=lambda i: f"k{i}")]  # items in key order, as the table holds them
        mean, low, high = reference(d)
        got = found[variant]
        assert (got.seeds, got.items) == d.shape
        assert (got.mean, got.low, got.high) == pytest.approx((mean, low, high), abs=1e-9), variant
    assert math.isnan(found["absent"].mean)


def test_missing_variant_is_nan_not_an_error():
    d = paired_bootstrap(table({("lynx", 0): [1.0]}), "v", "lynx")
    assert math.isnan(d.mean) and d.text() == "—"


def test_item_table_uses_the_metric_per_item():
    preds = pd.DataFrame([
        {"variant": "a", "seed": 0, "split": "openvqa_image", "category": "OCR", "keys": "i1", "correct": True,
         "prediction": "7", "probe": ""},
        {"variant": "a", "seed": 0, "split": "openvqa_image", "category": "Count", "keys": "i2", "correct": False,
         "prediction": "3", "probe": ""},
        {"variant": "a", "seed": 0, "split": "probes", "category": "yes_no", "keys": "p1", "correct": False,
         "prediction": "Yes.", "probe": "yes_no"},
    ])
    ocr = item_table(preds, item_metric("openvqa_image/OCR/acc"))
    assert ocr["item"].tolist() == ["i1"] and ocr["value"].tolist() == [100.0]
    overall = item_table(preds, item_metric("openvqa_image/acc"))
    assert sorted(overall["value"]) == [0.0, 100.0]
    assert item_table(preds, item_metric("probes/instruction_compliance"))["value"].tolist() == [100.0]


def test_verdicts_follow_the_paper_direction_and_the_interval():
    paper, lynx = {"openvqa_image/acc": 70.0}, {"openvqa_image/acc": 76.0}
    assert expected_direction(paper, lynx, "openvqa_image/acc") == "lower"
    assert expected_direction(paper, lynx, "openvqa_image/OCR/acc") == "lower"  # the headline, translated
    assert expected_direction(paper, lynx, "probes/caption_junk_rate") == "higher"  # lower is better there
    below = Delta("m", -5.0, -8.0, -2.0, 3, 302)
    above = Delta("m", 4.0, 1.0, 7.0, 3, 302)
    unclear = Delta("m", -1.0, -4.0, 2.0, 3, 302)
    assert verdict("v", "m", "lower", below).outcome == "reproduced"
    assert verdict("v", "m", "lower", above).outcome == "opposite"
    assert verdict("v", "m", "lower", unclear).outcome == "inconclusive"


def test_the_papers_size_is_placed_against_the_interval():
    """In the paper's direction, an interval that stops short of the paper's difference rules out an effect that
    large ("smaller"); one beyond it, "larger"; one holding it, "inside"; an effect of the other sign is smaller."""
    assert against_paper_size(Delta("m", 0.9, -0.4, 2.3, 3, 3020), -44.4) == "smaller"
    assert against_paper_size(Delta("m", 6.1, 1.3, 10.7, 3, 302), -14.9) == "smaller"
    assert against_paper_size(Delta("m", -7.4, -13.1, -1.8, 3, 302), -5.3) == "inside"
    assert against_paper_size(Delta("m", -20.0, -25.0, -15.0, 3, 302), -5.3) == "larger"
    assert against_paper_size(Delta("m", 9.0, 8.0, 10.0, 3, 302), 3.0) == "larger"
    assert against_paper_size(Delta("m", 1.0, 0.5, 1.5, 3, 302), 3.0) == "smaller"
    assert against_paper_size(Delta("m", 1.0, 0.5, 1.5, 3, 302), float("nan")) == "—"
    assert against_paper_size(Delta("m", float("nan"), float("nan"), float("nan"), 0, 0), -5.3) == "—"


def test_unknown_metric_names_are_refused():
    with pytest.raises(ValueError, match="unknown item metric"):
        item_metric("openvqa_image/accuracy")
    with pytest.raises(ValueError, match="unknown item metric"):  # a variant may not name an undeclared split
        item_metric("count_only/acc")


def test_a_report_pairs_the_accuracy_of_a_split_no_installed_package_declares():
    """A store scored on a plugin's split is reported where that package is not installed: its accuracy is still
    the mean of its items' verdicts, per category too."""
    rows = [{"keys": "a", "split": "count_only", "category": "Count", "correct": True},
            {"keys": "b", "split": "count_only", "category": "Count", "correct": False},
            {"keys": "c", "split": "openvqa_image", "category": "Count", "correct": True}]
    metric = item_metric("count_only/Count/acc", undeclared=True)
    assert metric.split == "count_only" and metric.higher_is_better and metric.label == "count_only accuracy, Count"
    assert metric.values(rows) == {"a": 100.0, "b": 0.0}
    with pytest.raises(ValueError, match="unknown item metric"):
        item_metric("count_only/score", undeclared=True)


@pytest.mark.parametrize(("p", "df", "expected"), [
    (0.975, 1, 12.706204736), (0.975, 2, 4.302652730), (0.975, 4, 2.776445105), (0.975, 30, 2.042272456),
    (0.95, 10, 1.812461123), (0.995, 3, 5.840909310), (0.975, 1000, 1.962339081),
])
def test_t_quantiles_match_published_values(p, df, expected):
    """The report's t-interval critical values (computed without scipy.stats) against scipy's t.ppf."""
    assert t_quantile(p, df) == pytest.approx(expected, abs=1e-7)


def test_the_report_lists_the_stages_a_variant_added_after_the_papers():
    from reports.runs import stage_names

    runs = pd.DataFrame({"metrics.time/pretrain_s": [1.0, 1.0], "metrics.time/polish_s": [None, 2.0],
                         "metrics.time/eval_s": [3.0, 3.0], "metrics.time/warm_up_s": [None, None]})
    assert stage_names(runs) == ["pretrain", "high_res", "finetune", "polish"]  # a column with no value is absent


def test_a_setting_a_baseline_run_predates_is_no_difference_at_its_neutral_value():
    """Baseline runs reused from before `train.order` and the stages' `mixture` existed have no such params."""
    from reports.runs import config_differences

    old = {"train.batch_size": "16"}
    new = {"train.batch_size": "16", "train.order": "['pretrain', 'high_res', 'finetune']",
           "train.finetune.mixture": "finetune", "train.polish.steps": "7"}
    assert config_differences(pd.DataFrame(), "v", "lynx", {"lynx": old, "v": new}) == {
        "train.polish.steps": ("—", "7")}
    assert config_differences(pd.DataFrame(), "v", "lynx", {"lynx": old, "v": {**new, "train.order": "['x']"}})[
        "train.order"] == ("—", "['x']")

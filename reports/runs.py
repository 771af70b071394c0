"""Read a grid's runs out of MLflow into pandas, and turn them into controlled-comparison tables."""

from __future__ import annotations

import math

import pandas as pd

from harness.config.schema import STAGES
from harness.data.scenes import IMAGE_CATEGORIES
from harness.errors import AblateError
from harness.evaluation.splits import known_splits
from harness.tracking import Store, search_frame

M = "metrics."
# The paper's Table 3 column order; categories not listed here follow alphabetically.
CATEGORY_ORDER = list(IMAGE_CATEGORIES)  # the paper's Table 3 order, as the world declares it


def load_grid_runs(store: Store, grid: str) -> tuple[pd.DataFrame, pd.Series]:
    """The child runs of grid `grid` as last run (one row each) and the grid's parent run, via `search_runs`."""
    if not store.exists():
        raise AblateError(f"no MLflow store at {store.root}; run `ablate grid run` first or pass --out")
    store.check_database()
    parents = search_frame(store, grid, "tags.`ablate.kind` = 'grid'")
    if parents is None:
        raise AblateError(f"experiment '{grid}' has no runs in {store.where}; run `ablate grid run` on it first")
    if parents.empty:
        raise AblateError(f"experiment '{grid}' in {store.where} has no grid run")
    parent = parents.sort_values("start_time", ascending=False).iloc[0]
    children = search_frame(store, grid, f"tags.`mlflow.parentRunId` = '{parent['run_id']}'")
    current = str(parent.get("tags.ablate.run_keys") or "").split(",")
    # A grid re-run with other settings adds new child runs; the report shows the grid as it was last run.
    return children[children["tags.ablate.run_key"].isin(current)], parent


def splits(runs: pd.DataFrame) -> list[str]:
    """Benchmark splits with metrics in these runs, e.g. ['openvqa_image', 'openvqa_video', 'mme', 'probes']."""
    found = {c[len(M):].split("/")[1] for c in _present(runs) if c.startswith(M + "eval/") and c.count("/") >= 2}
    order = known_splits()
    return sorted(found, key=lambda s: (order.index(s) if s in order else len(order), s))


def categories(runs: pd.DataFrame, split: str) -> list[str]:
    """Categories of a split that report k and n (Open-VQA style), in the paper's order."""
    prefix = f"{M}eval/{split}/"
    present = set(_present(runs))
    cats = {c[len(prefix):].split("/")[0] for c in present if c.startswith(prefix) and c.endswith("/k")}
    cats = {c for c in cats if f"{prefix}{c}/n" in present}  # k and n: an Open-VQA-style category
    return sorted(cats, key=lambda c: (CATEGORY_ORDER.index(c) if c in CATEGORY_ORDER else 99, c))


def _present(runs: pd.DataFrame) -> list[str]:
    """Columns with at least one value: search_runs returns the union of all runs' metric names."""
    return list(runs.columns[runs.notna().any().to_numpy()])


def variant_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """One run per variant, indexed by variant, a finished one where there is one: a run that has not started
    yet carries only the grid's bookkeeping tags, not the variant's (paper numbers, axis, mechanism)."""
    ranked = runs.assign(_unfinished=runs["status"] != "FINISHED").sort_values("_unfinished", kind="stable")
    return ranked.drop_duplicates("tags.ablate.variant").set_index("tags.ablate.variant")


def tag_text(row: pd.Series, name: str) -> str:
    """A tag of a run as text; "" when the run lacks it."""
    value = row.get(f"tags.ablate.{name}")
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def variant_order(runs: pd.DataFrame, preferred: list[str]) -> list[str]:
    present = list(dict.fromkeys(runs["tags.ablate.variant"]))
    return [v for v in preferred if v in present] + sorted(set(present) - set(preferred))


def run_settings(runs: pd.DataFrame) -> dict[str, dict[str, str]]:
    """Each variant's resolved training settings, from the MLflow params of one of its runs (a finished one where
    there is one: a run not started yet has none)."""
    rows = variant_rows(runs)
    params = [c for c in runs.columns if c.startswith("params.")]
    return {str(variant): {c[len("params."):]: value for c, value in row.items() if isinstance(value, str)}
            for variant, row in rows[params].iterrows()}


def config_differences(runs: pd.DataFrame, variant: str, baseline: str,
                       settings: dict[str, dict[str, str]] | None = None) -> dict[str, tuple[str, str]]:
    """{config key: (baseline's value, variant's value)} for every resolved setting in which a variant's runs
    differ from the reported baseline's, read from the runs' MLflow params (seed and labels left out).
    `settings`: `run_settings(runs)`, when comparing many variants."""
    from harness.resolve import NEUTRAL_WHEN_ADDED

    settings = run_settings(runs) if settings is None else settings
    old, new = settings.get(baseline, {}), settings.get(variant, {})
    skip = {"seed", "variant", "scale"}
    # A run from before a setting existed trained as its neutral value says: not a difference.
    neutral = {k: str(v) for k, v in NEUTRAL_WHEN_ADDED.items()}
    return {k: (old.get(k, "—"), new.get(k, "—")) for k in sorted(set(old) | set(new))
            if k not in skip and old.get(k, neutral.get(k)) != new.get(k, neutral.get(k))}


def summarise(runs: pd.DataFrame, metric: str, order: list[str]) -> pd.DataFrame:
    """Per variant: mean, sample std and count over seeds of one metric (finished runs only)."""
    column = M + metric
    done = runs[runs["status"] == "FINISHED"]
    if column not in done:
        return pd.DataFrame(index=order, columns=["mean", "std", "n"], dtype=float)
    stats = done.groupby("tags.ablate.variant")[column].agg(["mean", "std", "count"]).rename(columns={"count": "n"})
    return stats.reindex(order)


def seed_table(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One metric of the finished runs as a [seed, variant] table (empty when no run has it)."""
    column = M + metric
    done = runs[runs["status"] == "FINISHED"]
    if column not in done:
        return pd.DataFrame()
    return done.groupby(["tags.ablate.seed", "tags.ablate.variant"])[column].mean().unstack("tags.ablate.variant")


def paired_delta(runs: pd.DataFrame, metric: str, variant: str, baseline: str,
                 per_seed: pd.DataFrame | None = None) -> tuple[float, float]:
    """Mean difference to the baseline over seeds both ran, and a 95% t-interval half-width (nan for 1 seed).
    `per_seed`: the metric's `seed_table`, when comparing many variants."""
    by_seed = seed_table(runs, metric) if per_seed is None else per_seed
    if variant not in by_seed or baseline not in by_seed:
        return math.nan, math.nan
    diff = (by_seed[variant] - by_seed[baseline]).dropna()
    if diff.empty:
        return math.nan, math.nan
    if len(diff) < 2:
        return float(diff.mean()), math.nan
    from reports.stats import t_quantile

    half = t_quantile(0.975, len(diff) - 1) * diff.std(ddof=1) / math.sqrt(len(diff))
    return float(diff.mean()), float(half)


def load_predictions(store: Store, runs: pd.DataFrame, artifact: str = "predictions.jsonl") -> pd.DataFrame:
    """Every finished run's per-item prediction rows (its `predictions.jsonl` artifact, or another one such as
    `rescored/predictions.jsonl` from `ablate eval`), with `variant`, `seed` and `run_id` columns; runs without the
    artifact are left out."""
    import json
    import os
    import tempfile

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per run's artifact otherwise
    client = store.client()
    frames = []
    done = runs[runs["status"] == "FINISHED"]
    with tempfile.TemporaryDirectory() as tmp:
        for _, run in done.iterrows():
            path = store.artifact_file(run.get("artifact_uri", ""), artifact)
            if path is None:  # artifacts behind a tracking server
                try:
                    path = client.download_artifacts(run["run_id"], artifact, tmp)
                except Exception:  # a run from before predictions were logged, or a deleted artifact
                    continue
            with open(path, encoding="utf-8") as f:
                rows = [json.loads(line) for line in f if line.strip()]
            frame = pd.DataFrame(rows)
            frame["variant"], frame["seed"], frame["run_id"] = (run["tags.ablate.variant"],
                                                               run.get("tags.ablate.seed"), run["run_id"])
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def stage_names(runs: pd.DataFrame) -> list[str]:
    """The training stages these runs logged: the paper's three, then any a variant added (by name)."""
    logged = {c[len(M) + len("time/"):-len("_s")] for c in _present(runs) if c.startswith(f"{M}time/")
              and c.endswith("_s")} - {"eval"}
    return [*STAGES, *sorted(logged - set(STAGES))]


def loss_curves(store: Store, runs: pd.DataFrame, stages: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Per variant: the training loss history of its finished runs (stages share one step axis), mean over seeds."""
    stages = stages if stages is not None else stage_names(runs)
    client = store.client()
    out: dict[str, pd.DataFrame] = {}
    done = runs[runs["status"] == "FINISHED"]
    for variant, group in done.groupby("tags.ablate.variant", sort=False):
        points = [(m.step, m.value) for run_id in group["run_id"] for stage in stages
                  for m in client.get_metric_history(run_id, f"train/{stage}/loss")]
        if points:
            frame = pd.DataFrame(points, columns=["step", "loss"]).groupby("step", as_index=False)["loss"].mean()
            out[str(variant)] = frame.sort_values("step")
    return out

"""Read a grid's runs out of MLflow into pandas, and turn them into controlled-comparison tables."""

from __future__ import annotations

import mlflow
import pandas as pd

from harness.errors import AblateError
from harness.tracking import Store

METRIC_PREFIX = "metrics."


def load_grid_runs(store: Store, grid: str) -> tuple[pd.DataFrame, pd.Series]:
    """All child runs of grid `grid` (one row each) and the grid's parent run, via `mlflow.search_runs`."""
    if not store.exists():
        raise AblateError(f"no MLflow store at {store.root}; run `ablate grid run` first or pass --out")
    mlflow.set_tracking_uri(store.tracking_uri)
    if mlflow.get_experiment_by_name(grid) is None:
        raise AblateError(f"experiment '{grid}' has no runs in {store.root}; run `ablate grid run` on it first")
    parents = mlflow.search_runs(
        experiment_names=[grid], filter_string="tags.`ablate.kind` = 'grid'", output_format="pandas"
    )
    if parents.empty:
        raise AblateError(f"experiment '{grid}' in {store.root} has no grid run")
    parent = parents.iloc[0]
    children = mlflow.search_runs(
        experiment_names=[grid],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent['run_id']}'",
        output_format="pandas",
    )
    current = str(parent.get("tags.ablate.run_keys") or "").split(",")
    # A grid re-run with other settings adds new child runs; the report shows the grid as it was last run.
    return children[children["tags.ablate.run_key"].isin(current)], parent


def metric_columns(runs: pd.DataFrame) -> list[str]:
    """Evaluation metrics present in the runs, overall first then per task (without the 'metrics.' prefix)."""
    names = [c[len(METRIC_PREFIX):] for c in runs.columns if c.startswith(METRIC_PREFIX + "eval/")]
    names = [n for n in names if not n.endswith("/n")]
    return sorted(names, key=lambda n: (n.count("/"), n))


def comparison_table(runs: pd.DataFrame, baseline: str, order: list[str]) -> pd.DataFrame:
    """One row per variant: mean (and std over seeds) of each metric, and its difference to the baseline."""
    done = runs[runs["status"] == "FINISHED"]
    metrics = metric_columns(done)
    if done.empty or not metrics:
        raise AblateError("no finished runs with evaluation metrics in this grid yet")
    grouped = done.groupby("tags.ablate.variant")
    rows = []
    for variant in [v for v in order if v in grouped.groups]:
        group = grouped.get_group(variant)
        row = {"variant": variant, "axis": group["tags.ablate.axis"].iloc[0], "seeds": len(group)}
        for m in metrics:
            values = group[METRIC_PREFIX + m].astype(float)
            row[m] = values.mean()
            row[m + " std"] = values.std(ddof=1) if len(values) > 1 else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows).set_index("variant")
    if baseline in table.index:
        for m in metrics:
            table["Δ " + m] = table[m] - table.loc[baseline, m]
    return table

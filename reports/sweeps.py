"""The sweep section of a report: each variant at its own best setting (`ablate sweep run`, harness/sweep.py).

Read from MLflow alone: the trials of sweep `EXP` are the runs tagged `ablate.sweep: EXP` in the MLflow experiment
`EXP-sweep`. Per variant: trials by state, the best value of the experiment's search metric and its settings, and,
when the metric is a per-item one, the paired-bootstrap difference between the variants' best trials.
"""

from __future__ import annotations

import json

import pandas as pd

from harness.evaluation.scoring import item_metric
from harness.experiment import Experiment
from harness.search import Search
from harness.sweep import settings_text
from harness.tracking import Store, search_frame
from reports.runs import load_predictions
from reports.stats import item_table, paired_bootstrap

M = "metrics."


def load_sweep_runs(store: Store, name: str) -> pd.DataFrame:
    """Every trial run of sweep `name` (empty when there is none)."""
    trials = search_frame(store, f"{name}-sweep", f"tags.`ablate.sweep` = '{name}'")
    return pd.DataFrame() if trials is None else trials


def _state(row: pd.Series) -> str:
    if row["status"] == "FINISHED":
        return "complete"
    if isinstance(row.get("tags.ablate.pruned"), str):
        return "pruned"
    return "failed" if row["status"] == "FAILED" else "running or killed"


def sweep_table(store: Store, trials: pd.DataFrame, experiment: Experiment, baseline: str) -> pd.DataFrame:
    """One row per variant: trials by state, the best value and its settings, and the Δ of its best trial against
    the baseline's best trial (paired bootstrap over benchmark items; one seed each)."""
    search = experiment.search or Search(space=())
    column = M + search.metric
    trials = trials.assign(state=trials.apply(_state, axis=1))
    best: dict[str, pd.Series] = {}
    if column in trials:
        for variant, group in trials.groupby("tags.ablate.variant", sort=False):
            done = group[(group["state"] == "complete") & group[column].notna()]
            tagged = done[done.get("tags.ablate.best", pd.Series(index=done.index, dtype=object)) == "true"]
            if not tagged.empty:  # the study's own choice (ties go to its first trial)
                best[str(variant)] = tagged.iloc[0]
            elif not done.empty:
                at = done[column].idxmax() if search.direction == "maximize" else done[column].idxmin()
                best[str(variant)] = done.loc[at]
    deltas = _best_deltas(store, best, search.metric, baseline)
    order = [baseline, *[v for v in dict.fromkeys(trials["tags.ablate.variant"]) if v != baseline]]
    rows = []
    for variant in order:
        group = trials[trials["tags.ablate.variant"] == variant]
        if group.empty:
            continue
        counts = group["state"].value_counts().to_dict()
        row = {"variant": variant, "trials": len(group),
               "complete / pruned / failed": f"{counts.get('complete', 0)} / {counts.get('pruned', 0)} / "
                                             f"{counts.get('failed', 0)}",
               f"best {search.metric}": "—", "its settings": "—", "MLflow run": "—"}
        if variant in best:
            top = best[variant]
            params = json.loads(top.get("tags.ablate.search_params") or "{}")
            row.update({f"best {search.metric}": f"{top[column]:.2f}", "MLflow run": top["run_id"],
                        "its settings": settings_text(params)})
        if deltas:
            row[f"Δ vs {baseline}'s best [95% CI]"] = "—" if variant == baseline else deltas.get(variant, "—")
        rows.append(row)
    return pd.DataFrame(rows)


def _best_deltas(store: Store, best: dict[str, pd.Series], metric_name: str, baseline: str) -> dict[str, str]:
    """Paired-bootstrap Δ of each variant's best trial against the baseline's, when the metric is a per-item one."""
    try:
        metric = item_metric(metric_name.removeprefix("eval/"))
    except ValueError:
        return {}
    if baseline not in best or len(best) < 2:
        return {}
    predictions = load_predictions(store, pd.DataFrame(list(best.values())))
    if predictions.empty:
        return {}
    table = item_table(predictions, metric)
    return {v: paired_bootstrap(table, v, baseline, metric.name).text() for v in best if v != baseline}


def add_sweep_section(doc, tables, store: Store, experiment: Experiment, baseline: str) -> bool:
    """The report's sweep section, when the experiment was swept; returns whether there was one."""
    trials = load_sweep_runs(store, experiment.name)
    if trials.empty:
        return False
    search = experiment.search or Search(space=())
    metric = search.metric
    tuned = ", ".join(f"`{d.key}`" for d in search.space) or "the declared settings"
    doc.heading("Sweep: each variant at its own best setting")
    doc.paragraph(
        f"`ablate sweep run` tuned {tuned} for each variant in its own Optuna study, scoring every trial on "
        f"`{metric}` (seed {experiment.seeds[0]}, the experiment's scale and overrides). Δ compares the variants' "
        "best trials, paired by benchmark item. The best values are optimistic: each was chosen on the same "
        "benchmark it is reported on, for every variant alike.")
    doc.table(tables.add("sweep", sweep_table(store, trials, experiment, baseline)))
    return True

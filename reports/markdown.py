"""Write a grid's controlled comparison as a markdown report."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from harness.experiment import Experiment
from harness.tracking import Store
from reports.runs import comparison_table, load_grid_runs, metric_columns


def _short(metric: str) -> str:
    """'eval/color/exact_match' -> 'color', 'eval/exact_match' -> 'overall'."""
    parts = metric.split("/")
    return "overall" if len(parts) == 2 else parts[1]


def _cell(mean: float, std: float) -> str:
    return f"{mean:.1f}" if math.isnan(std) else f"{mean:.1f} ± {std:.1f}"


def _delta(value: float) -> str:
    return "—" if value == 0 or math.isnan(value) else f"{value:+.1f}"


def item_counts(runs: pd.DataFrame, metrics: list[str]) -> dict[str, int]:
    """Evaluation items behind each metric ('eval/color/exact_match' -> the largest 'eval/color/n')."""
    counts = {}
    for m in metrics:
        column = "metrics." + m.rsplit("/", 1)[0] + "/n"
        if column in runs:
            counts[m] = int(runs[column].max())
    return counts


def results_markdown(table: pd.DataFrame, baseline: str, metrics: list[str], counts: dict[str, int]) -> str:
    """The comparison table: one row per variant, metric means (± std over seeds) and Δ vs the baseline."""
    out = pd.DataFrame(index=table.index)
    out["axis"] = table["axis"]
    out["seeds"] = table["seeds"]
    for m in metrics:
        header = f"{_short(m)} (n={counts[m]})" if m in counts else _short(m)
        out[header] = [_cell(a, b) for a, b in zip(table[m], table[m + " std"], strict=True)]
    overall = metrics[0]
    if "Δ " + overall in table:
        out[f"Δ overall vs {baseline}"] = [_delta(v) for v in table["Δ " + overall]]
    return out.reset_index().to_markdown(index=False)


def write_report(experiment: Experiment, store: Store) -> Path:
    """Build the report for `experiment` from MLflow alone and write it to `<store>/reports/<name>.md`."""
    runs, parent = load_grid_runs(store, experiment.name)
    order = list(experiment.all_variants) + sorted(set(runs["tags.ablate.variant"]) - set(experiment.all_variants))
    table = comparison_table(runs, experiment.baseline, order)
    metrics = metric_columns(runs[runs["status"] == "FINISHED"])
    status = runs.groupby("status").size().to_dict()
    sha = parent.get("tags.git.sha", "unknown")

    lines = [
        f"# {experiment.name}: controlled comparison against `{experiment.baseline}`",
        "",
        experiment.description.strip(),
        "",
        f"- scale: `{parent.get('tags.ablate.scale', experiment.scale)}`; "
        f"seeds: {parent.get('tags.ablate.seeds', '')}; runs: "
        + ", ".join(f"{n} {s.lower()}" for s, n in sorted(status.items())),
        f"- MLflow store: `{store.tracking_uri}` (grid run `{parent['run_id']}`); code: `{sha}`",
        f"- generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `ablate report {experiment.path}`",
        "",
        "## Results",
        "",
        "Exact-match accuracy (%) on the held-out split by task (n = items), mean over seeds (± sample std where there"
        " are several).",
        f"Δ is the difference in overall accuracy from `{experiment.baseline}` in percentage points.",
        "",
        results_markdown(table, experiment.baseline, metrics, item_counts(runs, metrics)),
        "",
        "## What each variant changes",
        "",
    ]
    for variant, group in runs.groupby("tags.ablate.variant"):
        first = group.iloc[0]
        delta = first.get("tags.ablate.delta", "{}")
        paper = first.get("tags.ablate.paper") or ""
        paper_note = f" — paper: {paper}" if paper else ""
        lines.append(f"- `{variant}` ({first.get('tags.ablate.axis', '')}): `{delta}`{paper_note}")
    failed = runs[runs["status"] == "FAILED"]
    if not failed.empty:
        lines += ["", "## Failed runs", ""]
        for _, row in failed.iterrows():
            error = row.get("tags.ablate.error", "")
            lines.append(f"- `{row['tags.ablate.variant']}` seed {row.get('tags.ablate.seed')}: {error}")
    path = store.reports / f"{experiment.name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).replace("\n\n\n", "\n\n") + "\n")
    return path

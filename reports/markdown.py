"""Write a grid's controlled comparison as a markdown report with plots, from MLflow alone."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from harness.experiment import Experiment
from harness.tracking import Store
from reports.plots import plot_overall
from reports.runs import M, categories, load_grid_runs, paired_delta, splits, summarise, variant_order

TITLES = {
    "openvqa_image": "Open-VQA, image (the paper's Table 3 layout)",
    "openvqa_image_10x": "Open-VQA, image, 10x split (more statistical power)",
    "openvqa_video": "Open-VQA, video",
    "mme": "MME-style yes/no pairs (score = acc + acc+, max 200 per subtask)",
    "probes": "Instruction-following probes",
}


def _mean(stats: pd.DataFrame, variant: str, digits: int = 1) -> str:
    mean, std = stats.loc[variant, "mean"], stats.loc[variant, "std"]
    if pd.isna(mean):
        return "—"
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _delta(runs: pd.DataFrame, metric: str, variant: str, baseline: str) -> str:
    if variant == baseline:
        return "—"
    mean, half = paired_delta(runs, metric, variant, baseline)
    if math.isnan(mean):
        return "—"
    return f"{mean:+.1f}" if math.isnan(half) else f"{mean:+.1f} (± {half:.1f})"


def category_table(runs: pd.DataFrame, split: str, order: list[str], baseline: str, paper: dict[str, str]) -> str:
    """One row per variant: per category k/N (one seed) or mean % (several), overall %, Δ vs baseline."""
    cats = categories(runs, split)
    done = runs[runs["status"] == "FINISHED"]
    overall = summarise(runs, f"eval/{split}/acc", order)
    rows = []
    for variant in order:
        group = done[done["tags.ablate.variant"] == variant]
        row = {"variant": variant}
        for cat in cats:
            k, n = (group.get(f"{M}eval/{split}/{cat}/{x}") for x in ("k", "n"))
            if k is None or n is None or group.empty or k.isna().all():
                row[cat] = "—"
            elif len(group) == 1:
                row[cat] = f"{int(k.iloc[0])}/{int(n.iloc[0])}"
            else:
                row[cat] = f"{100 * (k / n).mean():.1f}%"
        row["overall %"] = _mean(overall, variant)
        row[f"Δ vs {baseline}"] = _delta(runs, f"eval/{split}/acc", variant, baseline)
        if split.startswith("openvqa") and paper:
            row["paper"] = paper.get(variant, "")
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False)


def metric_table(runs: pd.DataFrame, metrics: list[str], order: list[str], baseline: str, digits: int = 1) -> str:
    """One row per variant, one column per metric (mean ± std over seeds), Δ of the first metric."""
    stats = {metric: summarise(runs, metric, order) for metric in metrics}
    rows = []
    for variant in order:
        row = {"variant": variant}
        for metric in metrics:
            row[metric.split("/", 2)[-1]] = _mean(stats[metric], variant, digits)
        row[f"Δ {metrics[0].split('/', 2)[-1]}"] = _delta(runs, metrics[0], variant, baseline)
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False)


# Which metrics of a non-category split a table shows, first one first (its Δ is reported).
SPLIT_COLUMNS = {
    "mme": ("score", "acc", "*/score"),
    "probes": ("short_answer_words", "yes_no_compliance", "one_word_compliance", "caption_junk_rate"),
}


def _split_metrics(runs: pd.DataFrame, split: str) -> list[str]:
    prefix = f"{M}eval/{split}/"
    names = [c[len(prefix):] for c in runs.columns if c.startswith(prefix) and runs[c].notna().any()]
    names = [n for n in names if not n.endswith(("/k", "/n"))]
    chosen: list[str] = []
    for pattern in SPLIT_COLUMNS.get(split, ("*",)):
        if pattern.startswith("*"):
            chosen += sorted(n for n in names if n.endswith(pattern[1:]) and n not in chosen)
        elif pattern in names:
            chosen.append(pattern)
    return [f"eval/{split}/{n}" for n in chosen]


def write_report(experiment: Experiment, store: Store) -> Path:
    """Build the report for `experiment` from MLflow alone and write it to `<store>/reports/<name>.md`."""
    runs, parent = load_grid_runs(store, experiment.name)
    baseline = str(parent.get("tags.ablate.baseline") or experiment.baseline)
    preferred = str(parent.get("tags.ablate.variants") or "").split(",")
    order = variant_order(runs, preferred)
    status = runs.groupby("status").size().to_dict()
    first = runs.drop_duplicates("tags.ablate.variant").set_index("tags.ablate.variant")
    paper = {v: str(first.loc[v].get("tags.ablate.paper") or "") for v in order}
    paper = {v: p.split(":", 1)[-1].strip() for v, p in paper.items() if p}
    seeds = parent.get("tags.ablate.seeds", "")

    lines = [
        f"# {experiment.name}: controlled comparison against `{baseline}`",
        "",
        experiment.description.strip(),
        "",
        f"- scale `{parent.get('tags.ablate.scale', experiment.scale)}`; seeds {seeds}; runs: "
        + ", ".join(f"{n} {s.lower()}" for s, n in sorted(status.items())),
        f"- MLflow store `{store.tracking_uri}`, grid run `{parent['run_id']}`; code `{parent.get('tags.git.sha')}`",
        f"- generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `ablate report {experiment.path}`",
        "",
        "Every variant differs from the baseline only in the keys listed at the end; budget, data order per seed "
        "and evaluation are identical. Cells are k/N for one seed, mean over seeds otherwise (± sample std). "
        f"Δ is the paired difference from `{baseline}` in points, with a 95% t-interval when there are several "
        "seeds. An answer counts when the judge decides it implies the reference.",
    ]
    plot = plot_overall(runs, order, baseline, store.reports / f"{experiment.name}.png")
    if plot is not None:
        lines += ["", f"![overall accuracy per variant]({plot.name})"]
    for split in splits(runs):
        lines += ["", f"## {TITLES.get(split, split)}", ""]
        if categories(runs, split):
            lines.append(category_table(runs, split, order, baseline, paper))
        else:
            metrics = _split_metrics(runs, split)
            if metrics:
                lines.append(metric_table(runs, metrics, order, baseline, digits=2 if split == "probes" else 1))
    lines += ["", "## Cost", "", _cost_table(runs, order)]
    lines += ["", "## What each variant changes", ""]
    for variant in order:
        row = first.loc[variant]
        note = f" — paper: {row.get('tags.ablate.paper')}" if row.get("tags.ablate.paper") else ""
        lines.append(f"- `{variant}` ({row.get('tags.ablate.axis', '')}): `{row.get('tags.ablate.delta', '{}')}`{note}")
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


def _cost_table(runs: pd.DataFrame, order: list[str]) -> str:
    """Trainable parameters and wall-clock seconds per variant (mean over seeds)."""
    params = {label: summarise(runs, metric, order)["mean"]
              for label, metric in (("trainable params (M)", "params/finetune/trainable"),
                                    ("total params (M)", "params/total"))}
    times = [summarise(runs, f"time/{s}_s", order)["mean"] for s in ("pretrain", "high_res", "finetune", "eval")]
    rows = []
    for variant in order:
        row = {"variant": variant}
        for label, means in params.items():
            row[label] = "—" if pd.isna(means[variant]) else f"{means[variant] / 1e6:.2f}"
        seconds = [t[variant] for t in times]
        row["train s"] = f"{sum(s for s in seconds[:3] if not pd.isna(s)):.0f}"
        row["eval s"] = "—" if pd.isna(seconds[3]) else f"{seconds[3]:.0f}"
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False)

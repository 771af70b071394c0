"""Write a grid's controlled comparison as a markdown report with plots, from MLflow alone."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from harness.errors import AblateError
from harness.evaluation.scoring import item_metric
from harness.evaluation.splits import BUILT_IN, split_columns, split_title
from harness.experiment import Experiment
from harness.tracking import Store
from reports.document import Document
from reports.plots import (
    Painter,
    plot_accuracy_vs_compute,
    plot_deltas,
    plot_heatmap,
    plot_loss_curves,
    plot_overall,
)
from reports.runs import (
    M,
    categories,
    config_differences,
    load_grid_runs,
    load_predictions,
    loss_curves,
    paired_delta,
    run_settings,
    seed_table,
    splits,
    stage_names,
    summarise,
    tag_text,
    variant_order,
    variant_rows,
)
from reports.stats import (
    Delta,
    against_paper_size,
    expected_direction,
    item_table,
    paired_bootstraps,
    per_variant,
    run_records,
    verdict,
)
from reports.sweeps import add_sweep_section, load_sweep_runs


def _title(split: str) -> str:
    return split_title(split)


def _mean(stats: pd.DataFrame, variant: str, digits: int = 1) -> str:
    mean, std = stats.loc[variant, "mean"], stats.loc[variant, "std"]
    if pd.isna(mean):
        return "—"
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _delta(runs: pd.DataFrame, metric: str, variant: str, baseline: str,
           per_seed: pd.DataFrame | None = None) -> str:
    if variant == baseline:
        return "—"
    mean, half = paired_delta(runs, metric, variant, baseline, per_seed)
    if math.isnan(mean):
        return "—"
    return f"{mean:+.1f}" if math.isnan(half) else f"{mean:+.1f} (± {half:.1f})"


def category_table(runs: pd.DataFrame, split: str, order: list[str], baseline: str, paper: dict[str, str],
                   comparisons: Comparisons | None = None) -> pd.DataFrame:
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
        if comparisons is not None and not comparisons.predictions.empty:
            row[f"Δ vs {baseline} [95% CI]"] = "—" if variant == baseline else \
                comparisons.delta(f"{split}/acc", variant).text()
        else:
            row[f"Δ vs {baseline}"] = _delta(runs, f"eval/{split}/acc", variant, baseline)
        if split in PAPER_SPLITS and paper:
            row["paper"] = paper.get(variant, "")
        rows.append(row)
    return pd.DataFrame(rows)


def metric_table(runs: pd.DataFrame, metrics: list[str], order: list[str], baseline: str,
                 digits: int = 1) -> pd.DataFrame:
    """One row per variant, one column per metric (mean ± std over seeds), Δ of the first metric."""
    stats = {metric: summarise(runs, metric, order) for metric in metrics}
    per_seed = seed_table(runs, metrics[0])
    rows = []
    for variant in order:
        row = {"variant": variant}
        for metric in metrics:
            row[metric.split("/", 2)[-1]] = _mean(stats[metric], variant, digits)
        row[f"Δ {metrics[0].split('/', 2)[-1]}"] = _delta(runs, metrics[0], variant, baseline, per_seed)
        rows.append(row)
    return pd.DataFrame(rows)




def _split_metrics(runs: pd.DataFrame, split: str) -> list[str]:
    prefix = f"{M}eval/{split}/"
    names = [c[len(prefix):] for c in runs.columns if c.startswith(prefix) and runs[c].notna().any()]
    names = [n for n in names if not n.endswith(("/k", "/n"))]
    chosen: list[str] = []
    for pattern in split_columns(split) or ("*",):
        if pattern.startswith("*"):
            chosen += sorted(n for n in names if n.endswith(pattern[1:]) and n not in chosen)
        elif pattern in names:
            chosen.append(pattern)
    return [f"eval/{split}/{n}" for n in chosen]


HEADLINE = "openvqa_image/acc"
PAPER_SPLITS = {s.name for s in BUILT_IN if s.kind == "openvqa"}  # the paper reports Open-VQA figures only


class Comparisons:
    """Paired bootstrap deltas against the baseline, computed once per (metric, variant)."""

    def __init__(self, predictions: pd.DataFrame, baseline: str) -> None:
        self.predictions, self.baseline = predictions, baseline
        self._tables: dict[str, pd.DataFrame] = {}
        self._deltas: dict[tuple[str, str], Delta] = {}
        self._records: dict[str, list] = {}  # split -> run_records, shared by the split's metrics
        self._wide: dict[str, dict[str, pd.DataFrame]] = {}  # metric -> per_variant of its table

    def delta(self, metric: str, variant: str) -> Delta:
        if (metric, variant) not in self._deltas:
            if metric not in self._tables:
                if self.predictions.empty:
                    self._tables[metric] = pd.DataFrame(columns=["variant", "seed", "item", "value"])
                else:
                    wanted = item_metric(metric, undeclared=True)
                    if wanted.split not in self._records:
                        self._records[wanted.split] = run_records(self.predictions, wanted.split)
                    self._tables[metric] = item_table(self.predictions, wanted, self._records[wanted.split])
                self._wide[metric] = per_variant(self._tables[metric])
            wide = self._wide[metric]  # every variant of the metric at once: they share the bootstrap's draws
            found = paired_bootstraps(wide, sorted({*wide, variant}), self.baseline, metric)
            self._deltas |= {(metric, v): delta for v, delta in found.items()}
        return self._deltas[(metric, variant)]


def numerics_note(runs: pd.DataFrame) -> str:
    """A warning when a study's finished runs did their sums on different processors or with different torch
    thread counts (the `numerics.*` tags): neither is part of a run's key, yet both change the trained weights."""
    done = runs[runs["status"] == "FINISHED"]
    found = {what: sorted(set(done[column].dropna().astype(str))) for what, column in
             (("processors", "tags.numerics.device"), ("torch thread counts", "tags.numerics.threads"))
             if column in done}
    differing = {what: values for what, values in found.items() if len(values) > 1}
    if not differing:
        return ""
    return ("**Numerics differ between these runs**: " + "; ".join(f"{what} {', '.join(values)}" for what, values
                                                                   in differing.items())
            + ". Floating-point sums then run in another order, so a difference between such runs carries a "
            "numerical draw besides its seed (at `small`, the same lynx run scored 39.4 % with 2 threads and 40.7 % "
            "with 1; docs/findings.md, section 8). Train a study with one grid command on one machine to keep it out.")


def paper_delta(first: pd.DataFrame, variant: str, baseline: str, key: str = HEADLINE) -> float:
    """The paper's own difference on `key` (default Open-VQA image accuracy), variant minus baseline, from the runs'
    `paper_scores` tags (`first`: `variant_rows`); NaN where either lacks the number."""
    def score(name: str) -> float:
        text = tag_text(first.loc[name], "paper_scores") if name in first.index else ""
        return json.loads(text or "{}").get(key, math.nan)

    return score(variant) - score(baseline)


VIDEO = "openvqa_video/acc"  # the paper's other Table 3 column


def video_rows(runs: pd.DataFrame, order: list[str], baseline: str, comparisons: Comparisons,
               split: str = "openvqa_video") -> list[dict]:
    """The paper's video column as a claim: per ablation with a paper video figure, the measured difference in
    Open-VQA video accuracy (on `split`, e.g. the 10x one), its 95% paired-bootstrap interval, the paper's
    difference and whether the interval excludes zero on the paper's side. Apart from the verdicts, which judge
    each ablation on its mechanism's metric alone."""
    first = variant_rows(runs)
    rows = []
    for variant in order:
        paper = paper_delta(first, variant, baseline, VIDEO)
        if variant == baseline or math.isnan(paper) or paper == 0:
            continue
        measured = comparisons.delta(VIDEO.replace("openvqa_video/", f"{split}/", 1), variant)
        if measured.items == 0:
            continue
        rows.append({
            "variant": variant, "Δ Open-VQA video [95% CI]": measured.text(), "paper Δ video": f"{paper:+.1f}",
            "paper's direction": verdict(variant, VIDEO, "lower" if paper < 0 else "higher", measured).outcome,
            "paper's Δ video vs the CI": against_paper_size(measured, paper),
        })
    return rows


def verdict_rows(runs: pd.DataFrame, order: list[str], baseline: str, comparisons: Comparisons,
                 split: str = "openvqa_image") -> list[dict]:
    """One row per variant that has a paper number or a declared mechanism: the measured difference on the
    mechanism's metric and on the headline metric, each with its 95% paired-bootstrap interval, and the verdict.
    `split` measures Open-VQA image metrics on another image split (e.g. the 10x one, same metrics, more items)."""
    first = variant_rows(runs)

    def tag(variant: str, name: str) -> str:
        return tag_text(first.loc[variant], name) if variant in first.index else ""

    base_paper = json.loads(tag(baseline, "paper_scores") or "{}")
    rows = []
    for variant in order:
        paper = json.loads(tag(variant, "paper_scores") or "{}")
        mechanism = tag(variant, "mechanism") or HEADLINE
        if variant == baseline or not paper:
            continue
        expected = expected_direction(paper, base_paper, mechanism)
        measured_as = mechanism.replace("openvqa_image/", f"{split}/", 1)
        metric = item_metric(measured_as)
        measured = comparisons.delta(measured_as, variant)
        outcome = verdict(variant, measured_as, expected, measured).outcome if expected else "no paper direction"
        head = comparisons.delta(HEADLINE.replace("openvqa_image/", f"{split}/", 1), variant)
        paper_image = paper_delta(first, variant, baseline)
        rows.append({
            "variant": variant, "axis": tag(variant, "axis"),
            "mechanism metric": f"{metric.label} ({metric.unit}, {'higher' if metric.higher_is_better else 'lower'}"
                                " is better)",
            "Δ mechanism [95% CI]": measured.text(),
            "paper expects": expected or "—",
            "verdict": outcome,
            "Δ Open-VQA image [95% CI]": head.text(),
            "paper Δ image": "—" if math.isnan(paper_image) else f"{paper_image:+.1f}",
            "paper's Δ image vs the CI": against_paper_size(head, paper_image),
        })
    return rows


# Characters of the tables that LaTeX needs spelt out (after escaping %, _, & and friends).
LATEX_SYMBOLS = {"±": r"$\pm$", "Δ": r"$\Delta$", "—": "---", "→": r"$\rightarrow$", "≤": r"$\leq$",
                 "≥": r"$\geq$"}


def to_latex(frame: pd.DataFrame) -> str:
    """A booktabs tabular of a report table: escaped for LaTeX, first column left, the others right-aligned."""
    styler = frame.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    text = styler.to_latex(hrules=True, column_format="l" + "r" * (len(frame.columns) - 1))
    for symbol, latex in LATEX_SYMBOLS.items():
        text = text.replace(symbol, latex)
    return text


class TableFiles:
    """Writes each report table as `<folder>/<name>.csv` and `.tex` (and hands the frame back)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.names = folder, []

    def add(self, name: str, frame: pd.DataFrame) -> pd.DataFrame:
        self.folder.mkdir(parents=True, exist_ok=True)
        frame.to_csv(self.folder / f"{name}.csv", index=False)
        (self.folder / f"{name}.tex").write_text(to_latex(frame), encoding="utf-8")
        self.names.append(name)
        return frame


def write_report(experiment: Experiment, store: Store) -> Path:
    """Build the report for `experiment` from MLflow alone, into `<store>/reports/<name>/`: `report.md`, a
    self-contained `report.html`, every table as CSV and LaTeX, and the plots. Returns the markdown's path. An
    experiment that was only swept (`ablate sweep run`) gets the sweep section alone."""
    with Painter() as painter:  # first: its process gets matplotlib ready while this one reads the runs
        try:
            runs, parent = load_grid_runs(store, experiment.name)
        except AblateError:
            if _swept(store, experiment.name):
                return _write_sweep_report(experiment, store)
            raise
        return _grid_report(experiment, store, runs, parent, painter)


def _grid_report(experiment: Experiment, store: Store, runs: pd.DataFrame, parent: pd.Series,
                 painter: Painter) -> Path:
    baseline = str(parent.get("tags.ablate.baseline") or experiment.baseline)
    preferred = str(parent.get("tags.ablate.variants") or "").split(",")
    order = variant_order(runs, preferred)
    status = runs.groupby("status").size().to_dict()
    first = variant_rows(runs)
    paper = {v: tag_text(first.loc[v], "paper") for v in order}
    paper = {v: p.split(":", 1)[-1].strip() for v, p in paper.items() if p}
    axes_of = {v: tag_text(first.loc[v], "axis") for v in order}
    seeds = parent.get("tags.ablate.seeds", "")
    tables = report_tables(store, experiment)
    folder = tables.folder
    # The plots that need only the runs start drawing now, in the painter's process, while the statistics run here.
    overall = painter.draw(plot_overall, runs, order, baseline, folder / "overall.png")
    compute = painter.draw(plot_accuracy_vs_compute, runs, order, baseline, folder / "compute.png")
    curves = loss_curves(store, runs)
    curves = {v: curves[v] for v in order if v in curves}
    loss = painter.draw(plot_loss_curves, curves, axes_of, baseline, folder / "loss.png") \
        if baseline in curves and len(curves) > 1 else None

    doc = Document(f"{experiment.name}: controlled comparison against `{baseline}`")
    doc.paragraph(experiment.description)
    doc.bullets([
        f"scale `{parent.get('tags.ablate.scale', experiment.scale)}`; seeds {seeds}; runs: "
        + ", ".join(f"{n} {s.lower()}" for s, n in sorted(status.items())),
        f"MLflow store `{store.tracking_uri}`, grid run `{parent['run_id']}`; code `{parent.get('tags.git.sha')}`",
        f"generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `ablate report {experiment.path}`",
    ])
    mixed = numerics_note(runs)
    if mixed:
        doc.paragraph(mixed)
    doc.paragraph(
        "Every variant differs from the baseline only in the settings listed at the end; budget, data order per seed "
        "and evaluation are identical. Cells are k/N for one seed, mean over seeds otherwise (± sample std). "
        f"Δ is the paired difference from `{baseline}` in points, with a 95% interval from a paired bootstrap "
        "over benchmark items and seeds. An answer counts when the judge decides it implies the reference.")
    comparisons = Comparisons(load_predictions(store, runs), baseline)
    verdicts = verdict_rows(runs, order, baseline, comparisons)
    if verdicts:
        counts = pd.Series([r["verdict"] for r in verdicts]).value_counts().to_dict()
        doc.heading("Verdicts: does the miniature reproduce the paper's direction?")
        doc.paragraph("Each ablation is judged on the metric where the paper's mechanism acts (declared in its "
                      "variant file before any run). Δ is the variant minus the baseline, paired by benchmark item "
                      "and seed; the 95% interval resamples seeds and items (paired bootstrap). *reproduced*: the "
                      "interval excludes zero on the paper's side; *opposite*: on the other side; *inconclusive*: "
                      "it contains zero. The last column sets the paper's own image difference against the "
                      "interval of Δ Open-VQA image: *inside* (an effect of the paper's size is not ruled out), "
                      "*smaller* (the interval rules it out: in the paper's direction the miniature's effect is "
                      "smaller) or *larger*. Its points are those of the paper's benchmark, so this compares sizes "
                      "coarsely; it is what tells an effect that is absent or small here from one the study cannot "
                      "resolve.")
        doc.paragraph("Summary: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
        doc.table(tables.add("verdicts", pd.DataFrame(verdicts)))
        _video_column(doc, tables, "video_column", video_rows(runs, order, baseline, comparisons), "openvqa_video")
        _larger_benchmark_verdicts(doc, tables, store, runs, order, baseline)
    if len(order) > 1 and not comparisons.predictions.empty:
        rows = []
        for variant in (v for v in order if v != baseline):
            d = comparisons.delta(HEADLINE, variant)
            rows.append({"variant": variant, "axis": axes_of[variant], "delta": d.mean, "low": d.low, "high": d.high,
                         "paper": paper_delta(first, variant, baseline)})
        doc.image(painter.draw(plot_deltas, rows, baseline, "Open-VQA image accuracy", folder / "deltas.png"),
                  "difference from the baseline per variant, grouped by design axis")
    doc.image(overall, "overall accuracy per variant")
    for split in splits(runs):
        doc.heading(_title(split))
        if categories(runs, split):
            heat = _category_deltas(comparisons, split, categories(runs, split), order, baseline)
            heatmap = painter.draw(plot_heatmap, heat, baseline, f"{_title(split)}: Δ per category",
                                   folder / f"{split}-heatmap.png")  # drawn while the table is built
            doc.table(tables.add(split, category_table(runs, split, order, baseline, paper, comparisons)))
            doc.image(heatmap, f"category by variant differences from {baseline}, {split}")
        else:
            metrics = _split_metrics(runs, split)
            if metrics:
                doc.table(tables.add(split, metric_table(runs, metrics, order, baseline,
                                                         digits=2 if split == "probes" else 1)))
    if loss is not None:
        doc.heading("Training loss")
        doc.image(loss, "training loss curves per design axis")
    doc.heading("Cost")
    doc.paragraph("Means over seeds. FLOPs are counted (torch's FlopCounterMode) on each stage's first training "
                  "step, forward and backward, and multiplied by the stage's samples; a frozen encoder read from "
                  "the feature cache costs none. Peak memory is the training process's resident set on a CPU and "
                  "allocated memory on an accelerator, over the stages.")
    doc.table(tables.add("cost", _cost_table(runs, order)))
    doc.image(compute, "accuracy against training compute per run")
    add_sweep_section(doc, tables, store, experiment, baseline)
    doc.heading(f"What each variant changes against `{baseline}`")
    doc.paragraph(f"Every resolved setting in which the variant's runs differ from `{baseline}`'s (from the runs' "
                  "MLflow params), so a variant whose own delta sits on another parent shows that parent's change "
                  "too.")
    changes = []
    settings = run_settings(runs)
    for variant in order:
        row = first.loc[variant]
        note = f" — paper: {tag_text(row, 'paper')}" if tag_text(row, "paper") else ""
        if variant == baseline:
            changes.append(f"`{variant}` ({axes_of[variant]}): the baseline{note}")
            continue
        diff = config_differences(runs, variant, baseline, settings)
        listed = ", ".join(f"`{k}`: `{old}` → `{new}`" for k, (old, new) in diff.items()) or "nothing (same config)"
        changes.append(f"`{variant}` ({axes_of[variant]}): {listed}{note}")
    doc.bullets(changes)
    unfinished = runs[runs["status"] != "FINISHED"]
    keys = [k for k in str(parent.get("tags.ablate.run_keys") or "").split(",") if k]
    missing = len(set(keys) - set(runs["tags.ablate.run_key"]))
    if not unfinished.empty or missing:
        doc.heading("Runs without results")
        doc.paragraph("Left out of every table above. `ablate grid status` tells a running run from a stale one "
                      "(its process died) and says what the next `grid run` does with each.")
        doc.bullets([f"`{row['tags.ablate.variant']}` seed {tag_text(row, 'seed') or '?'}: {_state(row)}"
                     for _, row in unfinished.iterrows()]
                    + ([f"{missing} run(s) of the grid have no MLflow run yet (never started)"] if missing else []))
    doc.ready()
    return _save(doc, tables, store, experiment)


def _larger_benchmark_verdicts(doc: Document, tables: TableFiles, store: Store, runs: pd.DataFrame,
                               order: list[str], baseline: str) -> None:
    """The verdicts again on the larger benchmark that `ablate eval RUN --benchmark-scale N` scored every finished
    run on (its `rescored/` results): the same models, more items, narrower intervals. Said, not tabulated, while
    only some runs have been scored so."""
    done = runs[runs["status"] == "FINISHED"]
    column = "tags.ablate.rescored/benchmark_scale"
    scales = done[column].dropna().astype(int) if column in done else pd.Series(dtype=int)
    larger = scales[scales > 1]
    if larger.empty:
        return
    scale = int(larger.mode().iloc[0])
    doc.heading(f"Verdicts on {scale} times the benchmark (the same models, scored again)")
    missing = done[~done.index.isin(larger[larger == scale].index)]
    if not missing.empty:
        doc.paragraph(f"{len(done) - len(missing)} of {len(done)} finished runs have been scored on the benchmark "
                      f"built {scale} times larger (`ablate eval RUN --benchmark-scale {scale}`); the table appears "
                      "when all have: " + ", ".join(f"`{r['tags.ablate.variant']}` seed {tag_text(r, 'seed')}"
                                                    for _, r in missing.iterrows()) + " are still to do.")
        return
    rescored = Comparisons(load_predictions(store, done, "rescored/predictions.jsonl"), baseline)
    splits_scored = set(rescored.predictions.get("split", pd.Series(dtype=str)))
    split = "openvqa_image_10x" if "openvqa_image_10x" in splits_scored else "openvqa_image"
    doc.paragraph(f"Every run above was scored again by `ablate eval RUN --benchmark-scale {scale}`: the benchmark "
                  f"of its own world built {scale} times larger ({', '.join(sorted(splits_scored))}), with the "
                  "model, backbones and tokenizer it trained with; nothing was retrained. Image metrics are "
                  f"measured on `{split}`. The verdicts above stay those of the experiment's own benchmark; these "
                  "measure the same models more precisely.")
    doc.table(tables.add("verdicts_larger_benchmark",
                         pd.DataFrame(verdict_rows(runs, order, baseline, rescored, split))))
    video = "openvqa_video_10x"
    column = "tags.ablate.rescored/splits"
    scored = done[column].fillna("").str.split(",").map(lambda names: video in names) if column in done else None
    if video not in splits_scored or scored is None:
        return
    if not scored.all():
        doc.paragraph(f"{int(scored.sum())} of {len(done)} finished runs have been scored on `{video}` (`ablate eval "
                      f"RUN --benchmark-scale {scale} --splits {video}`); the paper's video column on it appears "
                      "when all have.")
        return
    _video_column(doc, tables, "video_column_larger_benchmark", video_rows(runs, order, baseline, rescored, video),
                  video)


def _video_column(doc: Document, tables: TableFiles, name: str, rows: list[dict], split: str) -> None:
    """The table of `video_rows`, with what it claims and what it does not."""
    if not rows:
        return
    doc.paragraph(f"The paper's video column, measured on `{split}`: the difference in Open-VQA video accuracy "
                  "against the paper's own, and whether its interval excludes zero on the paper's side (the same "
                  "rule as a verdict). A second column of the paper's Table 3, not a verdict: each ablation's "
                  "verdict is the one on its mechanism's metric above.")
    doc.table(tables.add(name, pd.DataFrame(rows)))


def _state(row: pd.Series) -> str:
    """What an unfinished run's MLflow status means for a reader of the report."""
    error = row.get("tags.ablate.error")
    if isinstance(row.get("tags.ablate.pruned"), str):
        return "pruned (stopped early by a sweep's pruner; not a failure)"
    return {"FAILED": "failed" + (f": {error}" if isinstance(error, str) else ""),
            "KILLED": "killed (the next `grid run` resumes or restarts it)",
            "RUNNING": "running, or stale if its process died",
            "SCHEDULED": "pending (not started)"}.get(row["status"], row["status"].lower())


def report_tables(store: Store, experiment: Experiment) -> TableFiles:
    """The tables of an experiment's report, in its folder `<store>/reports/<name>/` (plots and pages too)."""
    return TableFiles(store.reports / experiment.name)


def _save(doc: Document, tables: TableFiles, store: Store, experiment: Experiment) -> Path:
    doc.paragraph("Every table is also beside this report as CSV and as a LaTeX (booktabs) tabular: "
                  + ", ".join(f"`{name}`" for name in tables.names) + ".")
    path = tables.folder / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc.markdown())
    path.with_suffix(".html").write_text(doc.html(), encoding="utf-8")
    return path


def _swept(store: Store, name: str) -> bool:
    """Whether a readable store holds a sweep of experiment `name`."""
    try:
        store.check_database()
    except AblateError:
        return False
    return store.exists() and not load_sweep_runs(store, name).empty


def _write_sweep_report(experiment: Experiment, store: Store) -> Path:
    """The report of an experiment that was swept but never run as a grid."""
    doc = Document(f"{experiment.name}: sweep of `{experiment.baseline}` and its variants")
    doc.paragraph(experiment.description)
    doc.bullets([f"MLflow store `{store.tracking_uri}`, experiment `{experiment.name}-sweep`",
                 f"generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `ablate report {experiment.path}`"])
    tables = report_tables(store, experiment)
    add_sweep_section(doc, tables, store, experiment, experiment.baseline)
    return _save(doc, tables, store, experiment)


def _category_deltas(comparisons: Comparisons, split: str, cats: list[str], order: list[str],
                     baseline: str) -> pd.DataFrame:
    """Variant x category paired Δ (points) against the baseline; empty without per-item predictions."""
    if comparisons.predictions.empty:
        return pd.DataFrame()
    variants = [v for v in order if v != baseline]
    return pd.DataFrame([[comparisons.delta(f"{split}/{c}/acc", v).mean for c in cats] for v in variants],
                        index=variants, columns=cats)


def _cost_table(runs: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """What each variant costs (means over seeds): parameters, visual tokens, training compute, speed, wall time per
    stage and peak memory. Runs from before cost metrics were logged show dashes."""
    def mean(metric: str) -> pd.Series:
        return summarise(runs, metric, order)["mean"]

    def text(value, fmt: str) -> str:
        return "—" if pd.isna(value) else format(value, fmt)

    columns = {"total params (M)": ("params/total", 1e-6, ".2f"),
               "trainable params (M)": ("params/finetune/trainable", 1e-6, ".2f"),
               "visual tokens": ("cost/finetune/visual_tokens", 1, ".0f"),
               "GFLOP / sample (finetune)": ("cost/finetune/train_flops_per_sample", 1e-9, ".3g"),
               "samples/s (finetune)": ("cost/finetune/samples_per_s", 1, ".0f")}
    means = {label: mean(metric) * scale for label, (metric, scale, _) in columns.items()}
    stages = stage_names(runs)
    flops = [mean(f"cost/{s}/train_flops") for s in stages]
    times = {s: mean(f"time/{s}_s") for s in (*stages, "eval")}
    memory = [mean(f"cost/{s}/peak_memory_mb") for s in stages]
    rows = []
    for variant in order:
        row = {"variant": variant}
        row |= {label: text(means[label][variant], fmt) for label, (_, _, fmt) in columns.items()}
        spent = [f[variant] for f in flops if not pd.isna(f[variant])]
        row["train TFLOP"] = f"{sum(spent) / 1e12:.3g}" if spent else "—"
        row |= {f"{s} s": text(t[variant], ".0f") for s, t in times.items()}
        peaks = [m[variant] for m in memory if not pd.isna(m[variant])]
        row["peak memory (MB)"] = f"{max(peaks):.0f}" if peaks else "—"
        rows.append(row)
    return pd.DataFrame(rows)

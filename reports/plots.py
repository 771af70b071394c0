"""Plots for reports: overall accuracy per variant (seeds as points), the deltas against the baseline with their
95% intervals grouped by design axis, and a category x variant heatmap of deltas."""

from __future__ import annotations

import math
import multiprocessing
import sys
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from reports.runs import M

SPLITS = (("openvqa_image", "Open-VQA image"), ("openvqa_video", "Open-VQA video"))


def _pyplot():
    """matplotlib.pyplot on the Agg backend (reports are written to files, never shown), imported on first use: the
    painter's process imports it while the report's process reads MLflow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _warm_up() -> None:
    """What every first plot of a process pays: pyplot's import, the font cache, the renderer. Drawn while the
    report's process is still reading the runs, when the second core has nothing else to do."""
    import io

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1], label="x")
    ax.set_title("warm-up")
    ax.legend()
    fig.tight_layout()
    fig.savefig(io.BytesIO(), format="png", dpi=50)
    plt.close(fig)


class Painter:
    """Draws a report's plots in a second process while the report goes on with its statistics and tables: Agg
    drawing is about half of a report's time, and a machine with two cores does both at once.

    `draw(plot, *args)` returns a Future of the plot function's result (its path, or None when there was nothing
    to plot). The worker is forked as the painter is made, so it starts with everything imported and loads
    matplotlib while the caller reads MLflow; where fork is not the safe default (macOS, Windows) the plots are
    drawn in place and the Future is already done."""

    def __init__(self) -> None:
        forked = sys.platform.startswith("linux")
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) if forked else None
        if self._pool is not None:
            self._pool.submit(_warm_up)  # starts the process now, while the caller reads MLflow

    def draw(self, plot: Callable[..., Path | None], *args) -> Future:
        if self._pool is not None:
            return self._pool.submit(plot, *args)
        done: Future = Future()
        done.set_result(plot(*args))
        return done

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> Painter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def plot_overall(runs: pd.DataFrame, order: list[str], baseline: str, path: Path) -> Path | None:
    """Horizontal bars of mean overall accuracy per variant and split; one dot per seed. None if nothing to plot."""
    plt = _pyplot()
    done = runs[runs["status"] == "FINISHED"]
    has = lambda column: column in done and done[column].notna().any()  # noqa: E731
    panels = [(s, title) for s, title in SPLITS if has(f"{M}eval/{s}/acc")]
    if not panels or done.empty:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 0.45 * len(order) + 1.6), squeeze=False)
    for ax, (split, title) in zip(axes[0], panels, strict=True):
        column = f"{M}eval/{split}/acc"
        means = done.groupby("tags.ablate.variant")[column].mean().reindex(order)
        colours = ["#444444" if v == baseline else "#4a7ab5" for v in order]
        y = range(len(order))
        ax.barh(list(y), means.fillna(0).values, color=colours, height=0.6)
        for i, variant in enumerate(order):
            seeds = done.loc[done["tags.ablate.variant"] == variant, column].dropna()
            ax.scatter(seeds.values, [i] * len(seeds), color="black", s=10, zorder=3)
            if pd.notna(means[variant]):  # right of the bar and of every seed's dot, so nothing overlaps
                right = max([means[variant], *seeds.values])
                ax.text(right + 2, i, f"{means[variant]:.1f}", va="center", fontsize=8)
        if baseline in means and pd.notna(means[baseline]):
            ax.axvline(means[baseline], color="#444444", linestyle="--", linewidth=0.8)
        ax.set_yticks(list(y), order, fontsize=9)
        ax.invert_yaxis()
        ax.set_xlim(0, max(100.0, float(means.max() or 0) + 8))
        ax.set_xlabel("accuracy (%)")
        ax.set_title(title, fontsize=10)
    fig.suptitle(f"Overall accuracy per variant: bars are seed means, dots single seeds (baseline {baseline} "
                 "dark, dashed)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def delta_axis_limits(rows: list[dict]) -> tuple[float, float]:
    """The x range of the deltas plot: every interval and zero, with room at the right for the values; a paper Δ
    widens it only when it lies within the measured span (at least 10 points) of that range."""
    low = min([r["low"] for r in rows if pd.notna(r["low"])] or [min(r["delta"] for r in rows)])
    high = max([r["high"] for r in rows if pd.notna(r["high"])] or [max(r["delta"] for r in rows)])
    reach = max(10.0, high - low)
    near = [p for r in rows if pd.notna(p := r.get("paper", math.nan))
            and min(low, 0) - reach <= p <= max(high, 0) + reach]
    return min([low, 0, *near]) - 2, max([high, 0, *near]) + 6


def plot_deltas(rows: list[dict], baseline: str, metric_label: str, path: Path) -> Path | None:
    """One row per variant: the paired Δ against the baseline with its 95% interval, grouped by design axis.
    `rows`: dicts with variant, axis, delta, low, high, and optionally paper (the paper's own Δ, drawn as a hollow
    diamond; one far off the measured range sits at the plot's edge with its value, so it does not squeeze the
    intervals flat). Intervals that exclude zero are drawn dark."""
    plt = _pyplot()
    rows = [r for r in rows if pd.notna(r["delta"])]
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: (r["axis"], r["variant"]))
    papers = [r.get("paper", math.nan) for r in rows]
    left, right = delta_axis_limits(rows)
    fig, ax = plt.subplots(figsize=(8.5, 0.42 * len(rows) + 1.8))
    for i, r in enumerate(rows):
        significant = pd.notna(r["low"]) and (r["low"] > 0 or r["high"] < 0)
        colour = "#1f4e8c" if significant else "#9aaecb"
        ax.plot([r["low"], r["high"]], [i, i], color=colour, linewidth=2.2)
        ax.scatter([r["delta"]], [i], color=colour, s=28, zorder=3)
        paper = papers[i]
        if pd.notna(paper) and left < paper < right:
            ax.scatter([paper], [i], marker="D", s=30, facecolors="none", edgecolors="#b5562c", zorder=4)
        elif pd.notna(paper):  # off the plot: an arrow at the edge, with the value
            edge = left + 0.3 if paper < left else right - 4.5
            ax.annotate(f"{'← ' if paper < left else ''}paper {paper:+.1f}{' →' if paper > right else ''}", (edge, i),
                        va="center", ha="left", fontsize=7, color="#b5562c")
        # In a column at the right edge, kept free by the x limits: never on a bar or the zero line.
        ax.text(0.985, i, f"{r['delta']:+.1f}", va="center", ha="right", fontsize=8,
                transform=ax.get_yaxis_transform())
    ax.axvline(0, color="#444444", linewidth=0.8)
    labels = [f"{r['variant']}  ({r['axis']})" for r in rows]
    ax.set_yticks(range(len(rows)), labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel(f"Δ {metric_label} vs {baseline} (points; bars: 95% interval)")
    marked = any(pd.notna(p) for p in papers)
    ax.set_title("Each variant minus the baseline, by design axis (dark: excludes 0)"
                 + ("\nhollow diamond: the paper's own Δ (its points, on its benchmark)" if marked else ""),
                 fontsize=10)
    ax.set_xlim(left, right)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_heatmap(deltas: pd.DataFrame, baseline: str, title: str, path: Path) -> Path | None:
    """Category (columns) x variant (rows) heatmap of Δ in points against the baseline, values written in."""
    plt = _pyplot()
    if deltas.empty or deltas.isna().all().all():
        return None
    limit = max(5.0, float(deltas.abs().max().max()))
    fig, ax = plt.subplots(figsize=(1.0 * len(deltas.columns) + 3.2, 0.45 * len(deltas.index) + 1.6))
    image = ax.imshow(deltas.values.astype(float), cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    for i in range(len(deltas.index)):
        for j in range(len(deltas.columns)):
            value = deltas.iat[i, j]
            if pd.notna(value):
                ax.text(j, i, f"{value:+.0f}", ha="center", va="center", fontsize=8,
                        color="white" if abs(value) > 0.6 * limit else "black")
    ax.set_xticks(range(len(deltas.columns)), deltas.columns, fontsize=9)
    ax.set_yticks(range(len(deltas.index)), deltas.index, fontsize=9)
    fig.colorbar(image, ax=ax, label=f"Δ vs {baseline} (points)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_loss_curves(curves: dict[str, pd.DataFrame], axes_of: dict[str, str], baseline: str,
                     path: Path) -> Path | None:
    """Training loss against step (all stages on one axis, mean over seeds), one panel per design axis with the
    baseline drawn in every panel. `curves`: variant -> frame with columns step, loss."""
    plt = _pyplot()
    groups: dict[str, list[str]] = {}
    for variant in curves:
        if variant != baseline:
            groups.setdefault(axes_of.get(variant, ""), []).append(variant)
    if not groups or baseline not in curves:
        return None
    cols = min(3, len(groups))
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.4 * rows), squeeze=False, sharey=True)
    for ax, (axis, variants) in zip(axes.flat, sorted(groups.items()), strict=False):
        for variant in [baseline, *variants]:
            frame = curves[variant]
            ax.plot(frame["step"], frame["loss"], linewidth=1.6 if variant == baseline else 1.1,
                    color="#444444" if variant == baseline else None, label=variant)
        ax.set_title(axis or "(no axis)", fontsize=10)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    fig.supxlabel("training step (all stages)", fontsize=10)  # once for the figure: every panel has the same axes
    fig.supylabel("training loss", fontsize=10)
    fig.suptitle("Training loss per design axis (mean over seeds; baseline dark)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_accuracy_vs_compute(runs: pd.DataFrame, order: list[str], baseline: str, path: Path) -> Path | None:
    """Open-VQA image accuracy against each run's training compute (FLOPs counted on each stage's first step, times
    its samples), one dot per run and a labelled mean per variant. None without both numbers."""
    plt = _pyplot()
    done = runs[runs["status"] == "FINISHED"]
    accuracy = f"{M}eval/openvqa_image/acc"
    flops = [c for c in done.columns if c.startswith(f"{M}cost/") and c.endswith("/train_flops")]
    if done.empty or accuracy not in done or not flops:
        return None
    frame = pd.DataFrame({"variant": done["tags.ablate.variant"], "acc": done[accuracy],
                          "tflop": done[flops].sum(axis=1, min_count=1) / 1e12}).dropna()
    if frame.empty:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colours = plt.get_cmap("tab10")
    means = frame.groupby("variant")[["tflop", "acc"]].mean()
    for i, variant in enumerate(v for v in order if v in means.index):
        group = frame[frame["variant"] == variant]
        colour = "#222222" if variant == baseline else colours(i % 10)
        ax.scatter(group["tflop"], group["acc"], color=colour, s=14, alpha=0.5)
        ax.scatter([means.loc[variant, "tflop"]], [means.loc[variant, "acc"]], color=colour, s=60,
                   marker="D" if variant == baseline else "o", label=variant, edgecolors="white", zorder=3)
    if frame["tflop"].max() > 4 * frame["tflop"].min():
        ax.set_xscale("log")
    ax.set_xlabel("training compute per run (TFLOP, counted on each stage's first step)")
    ax.set_ylabel("Open-VQA image accuracy (%)")
    left_out = len(done) - len(frame)
    ax.set_title("Accuracy against training compute: small dots are runs, large markers variant means"
                 + (f"\n({left_out} finished run(s) logged no FLOP count and are left out)" if left_out else ""),
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

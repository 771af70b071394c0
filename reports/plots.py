"""Plots for reports: overall benchmark accuracy per variant, baseline marked, seeds as points."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # reports are written to files, never shown
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from reports.runs import M  # noqa: E402

SPLITS = (("openvqa_image", "Open-VQA image"), ("openvqa_video", "Open-VQA video"))


def plot_overall(runs: pd.DataFrame, order: list[str], baseline: str, path: Path) -> Path | None:
    """Horizontal bars of mean overall accuracy per variant and split; one dot per seed. None if nothing to plot."""
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

"""The report's numbers as pandas DataFrames, for a notebook: `reports.load(EXP)`.

```python
import reports
study = reports.load("experiments/lynx_table3.yaml", out="outputs")   # or the grid's name
study.runs[["variant", "seed", "status", "eval/openvqa_image/acc"]]    # one row per run
study.deltas("openvqa_image/acc")                                      # paired bootstrap vs the baseline
study.verdicts()                                                       # the report's verdict table
```

Everything is read from the MLflow store alone, as the report does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.tracking import Store
from reports.markdown import Comparisons, verdict_rows
from reports.runs import M, load_grid_runs, load_predictions, variant_order


@dataclass
class Study:
    """One grid's runs, per-item predictions and controlled comparisons."""

    name: str
    baseline: str
    variants: list[str]  # the baseline first, in the grid's order
    # One row per run: variant, seed, status, run_id, then every metric by its MLflow name.
    runs: pd.DataFrame = field(repr=False)
    # One row per (run, benchmark item): keys, split, category, question, answer, prediction, correct, variant, ...
    predictions: pd.DataFrame = field(repr=False)
    mlflow_runs: pd.DataFrame = field(repr=False)  # the raw `mlflow.search_runs` frame (params.*, tags.* too)
    _comparisons: Comparisons | None = field(default=None, repr=False)

    @property
    def comparisons(self) -> Comparisons:
        if self._comparisons is None:
            self._comparisons = Comparisons(self.predictions, self.baseline)
        return self._comparisons

    def deltas(self, metric: str = "openvqa_image/acc") -> pd.DataFrame:
        """Per variant: the paired difference from the baseline on a per-item metric (e.g. `openvqa_image/acc`,
        `openvqa_image/OCR/acc`, `probes/format_compliance`) with its 95% paired-bootstrap interval."""
        rows = []
        for variant in self.variants:
            if variant == self.baseline:
                continue
            d = self.comparisons.delta(metric, variant)
            rows.append({"variant": variant, "metric": metric, "delta": d.mean, "low": d.low, "high": d.high,
                         "excludes_zero": d.excludes_zero, "seeds": d.seeds, "items": d.items})
        return pd.DataFrame(rows)

    def verdicts(self, split: str = "openvqa_image") -> pd.DataFrame:
        """The report's verdict table: each ablation with a paper number, judged on its mechanism's metric;
        `split="openvqa_image_10x"` measures the Open-VQA image metrics on the 10x split instead."""
        return pd.DataFrame(verdict_rows(self.mlflow_runs, self.variants, self.baseline, self.comparisons, split))


def load(experiment: str | Path, out: str | Path = "outputs", predictions: str = "predictions.jsonl") -> Study:
    """A grid's numbers from the MLflow store under `out`. `experiment` is an experiment file or a grid's name;
    `predictions="rescored/predictions.jsonl"` reads what `ablate eval RUN --splits ...` scored last instead of
    the runs' own evaluation."""
    name = str(experiment)
    if name.endswith((".yaml", ".yml")) or Path(name).is_file():
        from harness.experiment import load_experiment

        name = load_experiment(experiment).name
    store = Store(Path(out))
    raw, parent = load_grid_runs(store, name)
    baseline = str(parent.get("tags.ablate.baseline") or "")
    order = variant_order(raw, str(parent.get("tags.ablate.variants") or "").split(","))
    runs = pd.DataFrame({
        "variant": raw["tags.ablate.variant"], "seed": pd.to_numeric(raw.get("tags.ablate.seed"), errors="coerce"),
        "status": raw["status"], "run_id": raw["run_id"],
        **{c[len(M):]: raw[c] for c in raw.columns if c.startswith(M)},
    }).sort_values(["variant", "seed"], key=lambda s: s.map(order.index) if s.name == "variant" else s)
    return Study(name=name, baseline=baseline, variants=order, runs=runs.reset_index(drop=True),
                 predictions=load_predictions(store, raw, predictions), mlflow_runs=raw)

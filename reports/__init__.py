"""The report generator: MLflow runs -> pandas tables -> markdown. It reads nothing but the MLflow store.

`reports.load(EXP)` gives the same numbers as DataFrames, for a notebook (see reports/study.py).
"""

from reports.markdown import write_report
from reports.runs import load_grid_runs
from reports.study import Study, load

__all__ = ["Study", "load", "load_grid_runs", "write_report"]

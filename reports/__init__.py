"""The report generator: MLflow runs -> pandas tables -> markdown. It reads nothing but the MLflow store."""

from reports.markdown import write_report
from reports.runs import load_grid_runs

__all__ = ["load_grid_runs", "write_report"]

"""Shared test setup: never reach a model hub; keep torch to the cores a test run has."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.pop("MLFLOW_TRACKING_URI", None)

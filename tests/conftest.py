"""Shared test setup: never reach a model hub; keep torch to the cores a test run has."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.pop("MLFLOW_TRACKING_URI", None)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    """An output folder with the tiny world and the tiny backbone zoo built (about two minutes, once per session)."""
    from harness.assets import prepare
    from harness.config.resolve import resolve
    from harness.tracking import Store

    store = Store(tmp_path_factory.mktemp("tiny-store"))
    store.create()
    prepare(resolve("lynx", "tiny").config, store)
    return store

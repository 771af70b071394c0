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
    prepare(resolve("lynx", "tiny").config, store, zoo_workers=2)  # the LM and ViT chains in parallel
    return store


# Runs that test the machinery, not learning: random backbones (no zoo), a small world, a few steps, probes only.
QUICK = {"model.llm.source": "random", "model.vision.weights": "random", "train.pretrain.steps": 4,
         "train.high_res.steps": 0, "train.finetune.steps": 4, "eval.splits": "probes", "world.num_images": 48,
         "world.num_noisy": 24, "world.num_videos": 16, "world.num_text": 32}


@pytest.fixture()
def quick() -> dict:
    """The QUICK overrides (a copy a test may change)."""
    return dict(QUICK)


@pytest.fixture(scope="session")
def quick_store(tmp_path_factory):
    """An output folder whose small world is built (the QUICK runs' world), shared by the machinery tests; each
    test uses its own experiment name in it."""
    from harness.assets import prepare
    from harness.config.resolve import resolve
    from harness.tracking import Store

    store = Store(tmp_path_factory.mktemp("quick-store"))
    store.create()
    prepare(resolve("lynx", "tiny", cli=QUICK).config, store)
    return store


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """A small real world (48 images, 16 videos; seconds to build), shared by the data-path tests."""
    from harness.config.schema import WorldConfig
    from harness.data import build_world

    small = WorldConfig(num_images=48, num_noisy=24, num_videos=16, num_text=32, samples_per_shard=16)
    return build_world(small, tmp_path_factory.getbasetemp() / "world-cache")


@pytest.fixture(scope="session")
def tokenizer(world):
    from harness.data import build_tokenizer

    return build_tokenizer(world)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 (its own sqlite store, artifacts served through it); yields its URI."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    root = tmp_path_factory.mktemp("mlflow-server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'server.db'}", "--artifacts-destination", str(root / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "w"), start_new_session=True)
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("mlflow server did not start: " + (root / "server.log").read_text()[-2000:]) from None
            time.sleep(0.5)
    yield uri
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()

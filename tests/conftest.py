"""Shared test setup: never reach a model hub; keep torch to the cores a test run has.

The suite runs in two pytest-xdist workers (`nox -s tests`: `-n 2 --dist loadfile`, one file per worker at a time).
Each worker then holds torch to one thread, so the two never oversubscribe the cores (OpenMP spin-waiting made that
5-20x slower here), and the slow-to-build caches (the tiny world and zoo, the quick world) are built once per
session by whichever worker asks first; each test still gets its own MLflow store.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.pop("MLFLOW_TRACKING_URI", None)
if os.environ.get("PYTEST_XDIST_WORKER"):  # before torch is imported; processes the tests start inherit it
    os.environ["OMP_NUM_THREADS"] = "1"


import pytest  # noqa: E402


def store_with_shared_cache(tmp_path_factory, name: str, prepare_config):
    """A fresh output folder whose `cache/` (world, zoo, feature cache) is built once per test session and shared
    by every xdist worker: the first builds it under a file lock, the others wait and reuse it."""
    from filelock import FileLock

    from harness.assets import prepare
    from harness.tracking import Store

    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / f"{name}-shared"
    with FileLock(f"{shared}.lock"):
        if not (shared / "built").is_file():
            builder = Store(shared)
            builder.create()
            prepare(prepare_config(), builder, zoo_workers=2)  # the LM and ViT chains in parallel
            (shared / "built").write_text("")
    store = Store(tmp_path_factory.mktemp(name))
    (store.root / "cache").symlink_to(shared / "cache", target_is_directory=True)
    store.create()
    return store


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    """An output folder with the tiny world and the tiny backbone zoo built (about two minutes, once per session)."""
    from harness.resolve import resolve

    return store_with_shared_cache(tmp_path_factory, "tiny-store", lambda: resolve("lynx", "tiny").config)


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
    from harness.resolve import resolve

    return store_with_shared_cache(tmp_path_factory, "quick-store", lambda: resolve("lynx", "tiny", cli=QUICK).config)


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

"""Same seed, same config, same machine: training the tiny model twice gives bit-identical logged metrics on the
CPU (every metric MLflow holds, the loss curves included; only wall-clock figures are left out)."""

from __future__ import annotations

import pytest

from harness.resolve import resolve
from harness.runner import execute
from harness.tracking import Store, experiment_id

pytestmark = pytest.mark.slow

WALL_CLOCK = ("seconds", "per_s", "samples_s", "time", "wall", "throughput", "mem")


def logged(store: Store, run_id: str) -> dict[str, list[tuple[int, float]]]:
    client = store.client()
    names = client.get_run(run_id).data.metrics
    return {name: [(m.step, m.value) for m in client.get_metric_history(run_id, name)]
            for name in sorted(names) if not any(w in name for w in WALL_CLOCK)}


def test_training_twice_logs_identical_metrics(quick_store, quick):
    store, histories = quick_store, []
    settings = {**quick, "train.pretrain.steps": 6, "train.high_res.steps": 4, "train.finetune.steps": 6,
                "train.log_every": 2, "train.feature_cache": False}
    for name in ("first", "second"):
        client = store.client()
        run_id = client.create_run(experiment_id(client, store, f"again-{name}")).info.run_id
        execute(store, run_id, resolve("lynx", "tiny", seed=3, cli=settings))
        histories.append(logged(store, run_id))
    first, second = histories
    assert any(name.startswith("train/") for name in first) and any(name.startswith("eval/") for name in first)
    assert first == second

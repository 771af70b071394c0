"""Where a run's model lives and in which dtype, and data parallelism, on real tiny parts (CPU only here):

- a stage's Lightning fit leaves the model where it is (Lightning's default moves it to the CPU);
- evaluation autocasts on the model's own device type with the run's dtype and moves batches to the model;
- frozen weights are held in the training dtype and trainable ones in fp32, stage by stage;
- two DDP processes (gloo) read different samples and together reproduce one process at the same global batch,
  with MLflow written by rank 0 only.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from harness.config.schema import DEFAULT_TRAINABLE, DataConfig, ModelConfig, StageConfig, WorldConfig
from harness.data import WorldDataModule
from harness.model import apply_freeze_policy, build_model
from harness.placement import autocast_for, hold_frozen_in_training_dtype, stage_strategy, to_device
from harness.training import MultimodalModule

SMALL = WorldConfig(num_images=48, num_noisy=24, num_videos=16, num_text=32, samples_per_shard=16)
STEPS = 3
ROOT = Path(__file__).resolve().parents[1]


class Recorder(L.Callback):
    """Each step's loss, answer-token count and sample identity (the input ids' sum per row)."""

    def __init__(self) -> None:
        self.record: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.record.append({"loss": float(outputs["loss"]), "tokens": int(batch["labels"][:, 1:].ne(-100).sum()),
                            "rows": (batch["input_ids"] * batch["attention_mask"]).sum(1).tolist()})


def tiny(tokenizer, seed: int = 0):
    torch.manual_seed(seed)
    cfg = ModelConfig()
    return cfg, build_model(cfg, len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                            tokenizer.eos_token_id)


def fit(model, cfg, data, strategy=None, precision="32-true", stage=None, callbacks=()):
    stage = stage or StageConfig(steps=STEPS, lr=1e-3, warmup_frac=0.0)
    apply_freeze_policy(model, cfg, stage)
    hold_frozen_in_training_dtype(model, precision)
    trainer = L.Trainer(max_steps=stage.steps, accelerator="cpu", devices=1, precision=precision, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=list(callbacks), **({"strategy": strategy} if strategy else {}))
    module = MultimodalModule(model, stage, 0.0)
    trainer.fit(module, train_dataloaders=data.stage_dataloader("finetune", 32))
    return trainer, module


def count_cpu_calls(monkeypatch) -> list[int]:
    calls = []
    original = MultimodalModule.cpu

    def counting(self):
        calls.append(1)
        return original(self)

    monkeypatch.setattr(MultimodalModule, "cpu", counting)
    return calls


def test_a_stage_leaves_the_model_where_it_is(world, tokenizer, monkeypatch):
    data = WorldDataModule(world, DataConfig(), tokenizer, 32, 4, seed=0)
    calls = count_cpu_calls(monkeypatch)
    cfg, model = tiny(tokenizer)
    fit(model, cfg, data)  # Lightning's own strategy: teardown moves the model to the CPU
    assert len(calls) == 1
    calls.clear()
    trainer, module = fit(model, cfg, data, strategy=stage_strategy("cpu", 1))
    assert calls == []  # ours leaves it on its device (here the CPU; on a GPU the same call is the 34-53 s saved)
    assert trainer.strategy.optimizers == []  # the stage's optimizer state is dropped, not copied to the CPU
    assert module.cpu() is module  # the instance patch is gone again after teardown
    assert len(calls) == 1


def test_frozen_weights_are_held_in_the_training_dtype_stage_by_stage(world, tokenizer):
    cfg, model = tiny(tokenizer)
    apply_freeze_policy(model, cfg, StageConfig())
    counts = hold_frozen_in_training_dtype(model, "bf16-mixed")
    assert model.llm.get_input_embeddings().weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.connector.parameters())
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert counts == {"bfloat16": frozen, "float32": sum(p.numel() for p in model.parameters()) - frozen}
    apply_freeze_policy(model, cfg, StageConfig(trainable=[*DEFAULT_TRAINABLE, "llm"]))  # a later stage trains the LLM: fp32 master weights
    hold_frozen_in_training_dtype(model, "bf16-mixed")
    assert model.llm.get_input_embeddings().weight.dtype == torch.float32
    assert all(p.dtype == torch.bfloat16 for p in model.vision.parameters())
    assert hold_frozen_in_training_dtype(model, "32-true") == {"float32": sum(p.numel() for p in model.parameters())}


def test_training_with_bf16_frozen_weights_runs_and_learns(world, tokenizer):
    cfg, model = tiny(tokenizer)
    data = WorldDataModule(world, DataConfig(), tokenizer, 32, 8, seed=0)
    recorder = Recorder()
    fit(model, cfg, data, strategy=stage_strategy("cpu", 1), precision="bf16-mixed",
        stage=StageConfig(steps=8, lr=3e-3, warmup_frac=0.0), callbacks=[recorder])
    losses = [r["loss"] for r in recorder.record]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert {p.dtype for p in model.vision.parameters()} == {torch.bfloat16}  # frozen all along
    assert {p.dtype for p in model.connector.parameters()} == {torch.float32}


def test_evaluation_autocasts_on_the_models_device_with_the_runs_dtype(tokenizer):
    _, model = tiny(tokenizer)
    with autocast_for(model, "bf16-mixed"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with autocast_for(model, "32-true"):
        assert not torch.is_autocast_enabled("cpu")
    batch = to_device({"input_ids": torch.ones(2, 3, dtype=torch.long), "keys": ["a", "b"]}, torch.device("meta"))
    assert batch["input_ids"].device.type == "meta" and batch["keys"] == ["a", "b"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two processes start torch and train: about 35 s
def test_two_ddp_processes_read_different_samples_and_match_one_process(world, tokenizer, tmp_path,
                                                                       tmp_path_factory):
    from harness.tracking import Store

    store = Store(tmp_path / "out")
    client = store.create()
    run_id = client.create_run(client.create_experiment("ddp")).info.run_id
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cache = tmp_path_factory.getbasetemp() / "world-cache"  # the module's world: the workers find it built
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
         "--master-port", str(free_port()), str(ROOT / "tests" / "ddp_worker.py"), str(cache), str(tmp_path),
         str(store.root), run_id],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]

    cfg, model = tiny(tokenizer)
    single = Recorder()
    fit(model, cfg, WorldDataModule(world, DataConfig(), tokenizer, 32, 8, seed=0),
        strategy=stage_strategy("cpu", 1), callbacks=[single])
    for step in range(STEPS):
        a, b, one = ranks[0][step], ranks[1][step], single.record[step]
        assert a["rows"] + b["rows"] == one["rows"]  # the two halves of the same global batch, no overlap
        assert a["tokens"] + b["tokens"] == one["tokens"]
        pooled = (a["loss"] * a["tokens"] + b["loss"] * b["tokens"]) / one["tokens"]
        # Step 0 is exact; later steps differ only because DDP averages per-rank token means.
        assert pooled == pytest.approx(one["loss"], rel=1e-5 if step == 0 else 2e-2)
    history = client.get_metric_history(run_id, "train/finetune/loss")
    assert sorted(m.step for m in history) == list(range(1, STEPS + 1))  # one writer: no step twice


def test_the_strategy_follows_devices_nodes_and_train_strategy():
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, SingleDeviceStrategy

    from harness.errors import ConfigError
    from harness.resolve import resolve

    assert isinstance(stage_strategy("cpu", 1), SingleDeviceStrategy)
    assert isinstance(stage_strategy("cpu", 2), DDPStrategy)
    assert isinstance(stage_strategy("cpu", 1, num_nodes=2), DDPStrategy)  # one device on each of two machines
    assert isinstance(stage_strategy("cpu", 2, kind="fsdp"), FSDPStrategy)
    cfg = resolve("lynx", "tiny", cli={"train.strategy": "fsdp", "train.num_nodes": 2}).config.train
    assert (cfg.strategy, cfg.num_nodes) == ("fsdp", 2)
    with pytest.raises(ConfigError, match="train.strategy"):
        resolve("lynx", "tiny", cli={"train.strategy": "deepspeed"})

"""One rank of the data-parallel test (tests/test_placement.py), started by `torch.distributed.run`.

    python -m torch.distributed.run --nproc-per-node 2 tests/ddp_worker.py WORLD_CACHE OUT_DIR STORE RUN_ID

Trains the tiny model a few finetune steps with the project's own data module, freeze policy, Lightning module,
MLflow callback and strategy (DDP over gloo), at a per-rank batch of 4, and writes each rank's losses, token
counts and sample keys to OUT_DIR/rank-R.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    import lightning as L
    import torch

    from harness.config.schema import DataConfig, ModelConfig, StageConfig
    from harness.data import WorldDataModule, build_tokenizer, build_world
    from harness.model import apply_freeze_policy, build_model
    from harness.placement import stage_strategy
    from harness.tracking import Store
    from harness.training import MlflowMetrics, MultimodalModule
    from tests.test_placement import SMALL, STEPS, Recorder

    cache, out, store, run_id = Path(sys.argv[1]), Path(sys.argv[2]), Store(Path(sys.argv[3])), sys.argv[4]
    torch.set_num_threads(1)
    world = build_world(SMALL, cache)
    tokenizer = build_tokenizer(world)
    torch.manual_seed(0)
    cfg = ModelConfig()
    model = build_model(cfg, len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    stage = StageConfig(steps=STEPS, lr=1e-3, warmup_frac=0.0)
    apply_freeze_policy(model, cfg, stage)
    data = WorldDataModule(world, DataConfig(), tokenizer, 32, batch_size=4, seed=0)
    recorder = Recorder()
    client = store.client()
    trainer = L.Trainer(max_steps=STEPS, accelerator="cpu", devices=2, strategy=stage_strategy("cpu", 2),
                        precision="32-true", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False,
                        callbacks=[recorder, MlflowMetrics(client, run_id, every=1, prefix="train/finetune")])
    trainer.fit(MultimodalModule(model, stage, 0.0), train_dataloaders=data.stage_dataloader("finetune", 32))
    rank = trainer.global_rank
    (out / f"rank-{rank}.json").write_text(json.dumps(recorder.record))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()

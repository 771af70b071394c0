"""One run, start to finish: data -> model -> freeze policy -> Lightning fit -> evaluation -> MLflow.

Called by the grid, in the grid process or in a worker process, with an MLflow run that already exists.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import warnings
from typing import Any

import yaml

from harness.config.resolve import ResolvedRun
from harness.config.validate import to_flat_dict
from harness.errors import AblateError
from harness.tracking import Store, finish, log_batch, provenance

log = logging.getLogger("ablate")


def run_tags(resolved: ResolvedRun) -> dict[str, str]:
    """The factor set of a run as MLflow tags: what it is, how it differs, where it came from."""
    cfg, variant = resolved.config, resolved.variant
    return {
        "ablate.kind": "run",
        "ablate.variant": variant.name,
        "ablate.axis": variant.axis,
        "ablate.baseline": variant.baseline or "",
        "ablate.delta": json.dumps(variant.flat_delta(), sort_keys=True),
        "ablate.paper": variant.paper or "",
        "ablate.scale": cfg.scale,
        "ablate.seed": str(cfg.seed),
        "ablate.config_hash": resolved.hash,
        "ablate.run_key": resolved.key,
        "mlflow.runName": f"{variant.name}-s{cfg.seed}",
        **provenance(),
    }


def quiet_libraries() -> None:
    """Keep a run's output to our own lines: Lightning's banners and known-harmless warnings say nothing useful."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*IterableDataset.*__len__.*", ".*treespec.*LeafSpec.*"):
        warnings.filterwarnings("ignore", pattern)


def execute(store: Store, run_id: str, resolved: ResolvedRun, threads: int | None = None) -> dict[str, float]:
    """Train and evaluate one resolved config into MLflow run `run_id`; mark it FINISHED or FAILED."""
    client = store.client()
    client.update_run(run_id, status="RUNNING")
    try:
        metrics = _train_and_evaluate(store, client, run_id, resolved, threads)
    except Exception as err:
        reason = f"{type(err).__name__}: {err}"
        log_batch(client, run_id, tags={"ablate.error": reason[:5000]})
        finish(client, run_id, ok=False)
        if isinstance(err, AblateError):
            raise
        raise AblateError(f"run {resolved.variant.name} (seed {resolved.config.seed}) failed: {reason}") from err
    finish(client, run_id, ok=True)
    return metrics


def _train_and_evaluate(
    store: Store, client, run_id: str, resolved: ResolvedRun, threads: int | None
) -> dict[str, float]:
    # Heavy imports live here so `ablate variants list` and config errors stay fast.
    import lightning as L
    import torch

    from harness.data import WorldDataModule, build_tokenizer, build_world
    from harness.evaluation import predict, score
    from harness.model import apply_freeze_policy, build_model
    from harness.model.freeze import format_freeze_table
    from harness.training import MlflowMetrics, MultimodalModule

    cfg = resolved.config
    if threads:
        torch.set_num_threads(threads)
    quiet_libraries()
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    world = build_world(cfg.data, store.cache)
    tokenizer = build_tokenizer(world)
    special = (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    model = build_model(cfg.model, len(tokenizer), *special)
    freeze_rows = apply_freeze_policy(model, cfg.model)
    freeze_lines = format_freeze_table(freeze_rows)
    for line in freeze_lines:
        log.info("[%s] %s", cfg.variant, line)

    log_batch(
        client, run_id,
        params=to_flat_dict(cfg),
        tags={**run_tags(resolved), "ablate.world_hash": world.manifest["hash"],
              **{f"freeze.{r['component']}": "trainable" if r["trainable"] else "frozen" for r in freeze_rows}},
        metrics={f"params/{r['component']}": r["params"] for r in freeze_rows}
        | {"params/trainable": sum(r["trainable_params"] for r in freeze_rows),
           "params/total": sum(r["params"] for r in freeze_rows)},
    )
    client.log_text(run_id, yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False), "config.yaml")
    client.log_text(run_id, "\n".join(freeze_lines) + "\n", "freeze_policy.txt")

    data = WorldDataModule(
        cfg.data, tokenizer, world.train_shards, world.eval_shards,
        image_size=cfg.model.vision.image_size, batch_size=cfg.train.batch_size, seed=cfg.seed,
    )
    module = MultimodalModule(model, cfg.train)
    metrics_cb = MlflowMetrics(client, run_id, cfg.train.log_every)
    trainer = L.Trainer(
        max_steps=cfg.train.max_steps,
        accelerator=cfg.train.accelerator,
        devices=1,
        precision=cfg.train.precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[metrics_cb],
        deterministic=False,
    )
    started = time.perf_counter()
    trainer.fit(module, datamodule=data)
    train_seconds = time.perf_counter() - started

    started = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.train.precision == "bf16-mixed"):
        rows = predict(model, tokenizer, data.eval_batches(cfg.eval.batch_size), cfg.eval)
    eval_seconds = time.perf_counter() - started

    metrics: dict[str, Any] = score(rows)
    metrics |= {"time/train_s": train_seconds, "time/eval_s": eval_seconds,
                "train/final_loss": float(trainer.callback_metrics.get("train/loss", float("nan")))}
    log_batch(client, run_id, metrics=metrics, step=cfg.train.max_steps)
    client.log_text(run_id, "".join(json.dumps(r) + "\n" for r in rows), "predictions.jsonl")
    return metrics

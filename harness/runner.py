"""One run, start to finish: assets -> model -> stages (pretrain, high-res, finetune) -> benchmark -> MLflow.

Called by the grid, in the grid process or in a worker process, with an MLflow run that already exists.
Each stage is a Lightning fit with its own freeze policy, data mixture, resolution, learning-rate schedule and
budget. The trained weights that are not frozen everywhere are saved so `ablate eval` can score them again.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from harness.components import plugin_tags
from harness.config.schema import RunConfig, StageConfig
from harness.config.validate import to_flat_dict
from harness.errors import AblateError
from harness.progress import RunProgress
from harness.resolve import ResolvedRun, eval_settings, training_settings
from harness.resume import WEIGHTS_DIGEST, checkpoint_dir, discard, weights_digest
from harness.tracking import Store, finish, log_batch, mark_killed, numerics, provenance

if TYPE_CHECKING:  # torch and Lightning load when a run starts, not when the CLI imports this module
    from harness.training import MlflowMetrics, MultimodalModule

log = logging.getLogger("ablate")


def quiet_libraries() -> None:
    """Keep a run's output to our own lines: Lightning's banners and known-harmless warnings say nothing useful."""
    import transformers

    transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars for every local checkpoint
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*IterableDataset.*__len__.*", ".*treespec.*LeafSpec.*",
                    ".*module\\(s\\) in eval mode.*",  # frozen backbones stay in eval mode on purpose
                    ".*no_repeat_ngram_size.*inputs_embeds.*",  # known: the n-gram rule sees generated tokens only
                    ".*persistent_workers=True.*"):  # a stage's loader is iterated once; nothing to persist
        warnings.filterwarnings("ignore", pattern)


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
        "ablate.paper_scores": json.dumps(variant.paper_scores, sort_keys=True),
        "ablate.mechanism": variant.mechanism or "",
        "ablate.scale": cfg.scale,
        "ablate.seed": str(cfg.seed),
        "ablate.config_hash": resolved.hash,
        "ablate.run_key": resolved.key,
        "mlflow.runName": f"{variant.name}-s{cfg.seed}",
        "ablate.variant_source": variant.source,
        **plugin_tags(to_flat_dict(cfg)),
        **provenance(),
    }


def stage_image_size(config: RunConfig, stage: StageConfig) -> int:
    v = config.model.vision
    return v.high_res_size if stage.resolution == "high" else v.image_size


def execute(store: Store, run_id: str, resolved: ResolvedRun, threads: int | None = None,
            stage_callbacks=None) -> dict[str, float]:
    """Train and evaluate one resolved config into MLflow run `run_id`; mark it FINISHED or FAILED (or KILLED and
    tagged pruned when a sweep's pruner stops it). `stage_callbacks(first_step, validation)` gives extra Lightning
    callbacks for each stage, told the run-wide step at which the stage's fit starts and handed a function that
    returns the stage's held-out validation batches (`WorldDataModule.validation_batches`)."""
    from harness.training import Pruned

    client = store.client()
    client.update_run(run_id, status="RUNNING")
    log.info("  start   %s", resolved.label)
    store.locks.mkdir(parents=True, exist_ok=True)
    stages = [(name, stage.steps) for name, stage in resolved.config.train.stages()]
    progress = RunProgress(store.locks, resolved.key, resolved.label, stages)
    progress.update(force=True)
    try:
        metrics = _train_and_evaluate(store, client, run_id, resolved, threads, progress, stage_callbacks)
    except Pruned as stop:
        log_batch(client, run_id, tags={"ablate.pruned": str(stop)[:5000]})
        client.set_terminated(run_id, "KILLED")
        discard(checkpoint_dir(store, resolved.key))  # a pruned trial is not resumed
        raise
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C; Lightning turns one inside `fit` into SystemExit(1)
        mark_killed(client, run_id)
        raise KeyboardInterrupt from None
    except Exception as err:
        reason = f"{type(err).__name__}: {err}"
        log_batch(client, run_id, tags={"ablate.error": reason[:5000]})
        finish(client, run_id, ok=False)
        if isinstance(err, AblateError):
            raise
        raise AblateError(f"run {resolved.variant.name} (seed {resolved.config.seed}) failed: {reason}") from err
    finally:
        progress.close()
    finish(client, run_id, ok=True)
    return metrics


def evaluation_world(world, config: RunConfig):
    """The run's world with the splits of `config.eval.splits` that bring their own items (a plugin's) written
    into it (`harness.data.world.with_splits`)."""
    from harness.data.world import with_splits
    from harness.evaluation.splits import get_split, parse_splits

    return with_splits(world, [get_split(name) for name in parse_splits(config.eval.splits)])


def build_for(config: RunConfig, store: Store):
    """Assets, concrete model config and the model for a run config (nothing frozen yet)."""
    from harness.assets import concrete_model_config, prepare
    from harness.model import build_model

    assets = prepare(config, store)
    model_cfg = concrete_model_config(config.model, assets)
    tok = assets.tokenizer
    model = build_model(model_cfg, len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    return assets, model_cfg, model


def _train_and_evaluate(
    store: Store, client, run_id: str, resolved: ResolvedRun, threads: int | None, progress: RunProgress,
    stage_callbacks=None,
) -> dict[str, float]:
    # Heavy imports live here so `ablate variants list` and config errors stay fast.
    import lightning as L
    import torch

    from harness.data import WorldDataModule
    from harness.evaluation.splits import parse_splits
    from harness.features import stage_features
    from harness.model import apply_freeze_policy
    from harness.model.freeze import format_freeze_table
    from harness.placement import hold_frozen_in_training_dtype, run_device, stage_strategy
    from harness.resume import ResumePoint, capture_rng, describe_point, load_point, restore_rng, save_point
    from harness.training import (
        MlflowMetrics,
        MultimodalModule,
        ProgressCallback,
        ResumePoints,
        peak_memory_mb,
        reset_peak_memory,
    )

    cfg = resolved.config
    if threads:
        torch.set_num_threads(threads)
    quiet_libraries()
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    assets, model_cfg, model = build_for(cfg, store)
    log_batch(
        client, run_id, params={**training_settings(cfg), "variant": cfg.variant, "scale": cfg.scale},
        tags={**run_tags(resolved), "ablate.world_hash": assets.world.manifest["hash"],
              "ablate.zoo": store.relative(assets.zoo_dir) if assets.zoo_dir else "",
              **numerics(torch.get_num_threads(), str(run_device(cfg.train.accelerator)))},
    )
    store.log_text(client, run_id, yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False), "config.yaml")

    eval_size = stage_image_size(cfg, cfg.train.last_stage())
    data = WorldDataModule(assets.world, cfg.data, assets.tokenizer, image_size=eval_size,
                           batch_size=cfg.train.batch_size, seed=cfg.seed,
                           mixtures={name: stage.mixture for name, stage in cfg.train.stages(active_only=False)})
    metrics: dict[str, Any] = {}
    freeze_report, step_offset, trained, feature_log = [], 0, set(), {}
    folder = checkpoint_dir(store, resolved.key)
    resume = load_point(folder, run_id)
    if resume is not None:  # a killed run of this MLflow run: go on from its last resume point
        model.load_state_dict(resume.weights, strict=False)
        trained, metrics = set(resume.trained), dict(resume.metrics)
        freeze_report, feature_log = list(resume.freeze_report), dict(resume.feature_log)
        where = describe_point(folder)
        log.info("  resume  %s from %s", resolved.label, where)
        log_batch(client, run_id, tags={"ablate.resumed_from": where})
    else:
        discard(folder)  # a resume point of another MLflow run (one deleted since) is not this run's
    model.to(run_device(cfg.train.accelerator))  # once: every stage and the benchmark run where it lives
    stages = cfg.train.stages()

    def weights(names: set[str]) -> dict:
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k in names}

    for index, (name, stage) in enumerate(stages):
        if resume is not None and index < resume.stage_index:
            step_offset += stage.steps
            continue
        done = resume.done if resume is not None and index == resume.stage_index else 0
        size = stage_image_size(cfg, stage)
        rows = apply_freeze_policy(model, model_cfg, stage)
        dtypes = hold_frozen_in_training_dtype(model, cfg.train.precision)
        # The state at this stage's start, which a mid-stage resume point completes with the step reached.
        start = ResumePoint(run_id, index, name, 0, sorted(trained), {}, metrics=dict(metrics),
                            freeze_report=list(freeze_report), feature_log=dict(feature_log))
        vision_was_trained = any(k.startswith("vision.") for k in trained)  # by an earlier stage
        trained |= {n for n, p in model.named_parameters(remove_duplicate=False) if p.requires_grad}
        feature_log[name] = stage_features(
            store.cache / "features", model, data, name, list(data.mixture(name)), size, cfg.train.precision,
            cfg.train.feature_cache, "vision" in stage.trainable, vision_was_trained)
        log.debug("[%s %s] vision features: %s", cfg.variant, name, feature_log[name])
        lines = format_freeze_table(rows)
        freeze_report += [f"[{name}]", *lines]
        for line in lines:
            log.debug("[%s %s] %s", cfg.variant, name, line)
        if not done:  # a resumed stage logged these when it first started
            log_batch(client, run_id,
                      tags={f"freeze.{name}.{r['component']}": "trainable" if r["trainable"] else "frozen"
                            for r in rows},
                      metrics={f"params/{name}/trainable": sum(r["trainable_params"] for r in rows),
                               "params/total": sum(r["params"] for r in rows),
                               **{f"params/{name}/{dtype}": n for dtype, n in dtypes.items()}})
        restore = {"optimizer": resume.optimizer, "scheduler": resume.scheduler} if done else None
        module = MultimodalModule(model, stage, cfg.train.weight_decay, done=done, restore=restore,
                                  no_decay=cfg.train.no_decay, pack=cfg.train.sequence_packing)
        callback = MlflowMetrics(client, run_id, cfg.train.log_every, prefix=f"train/{name}", step_offset=step_offset,
                                 done=done, logged_through=last_logged_step(client, run_id, f"train/{name}/loss")
                                 if resume is not None else -1)
        shown = ProgressCallback(progress, name, stage.steps, done)
        earlier = resume.seconds if done else 0.0
        started = time.perf_counter()

        def save_mid_stage(trainer, step: int, start=start, earlier=earlier, started=started,
                           callback=callback, names=frozenset(trained)) -> None:
            callback.flush()  # MLflow holds every step up to this one, so a resume logs none of them twice
            save_point(folder, dataclasses.replace(
                start, done=step, weights=weights(names), optimizer=trainer.optimizers[0].state_dict(),
                scheduler=trainer.lr_scheduler_configs[0].scheduler.state_dict(),
                seconds=earlier + time.perf_counter() - started, rng=capture_rng()))

        points = ResumePoints(cfg.train.checkpoint_every, done, stage.steps, save_mid_stage)
        trainer = L.Trainer(
            max_steps=stage.steps - done, accelerator=cfg.train.accelerator, devices=cfg.train.devices,
            num_nodes=cfg.train.num_nodes,
            strategy=stage_strategy(cfg.train.accelerator, cfg.train.devices, cfg.train.num_nodes, cfg.train.strategy),
            precision=cfg.train.precision, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[callback, shown, points, *(stage_callbacks(step_offset + done, functools.partial(
                data.validation_batches, name, size)) if stage_callbacks else [])],
        )
        if resume is not None and index == resume.stage_index:
            restore_rng(resume.rng)
        reset_peak_memory(module.device)
        trainer.fit(module, train_dataloaders=data.stage_dataloader(name, size, start_batch=done))
        metrics[f"time/{name}_s"] = earlier + time.perf_counter() - started
        metrics.update(stage_cost(name, module, callback, stage.steps * cfg.train.batch_size * trainer.world_size,
                                  started, peak_memory_mb(module.device)))
        metrics[f"train/{name}/final_loss"] = callback.last_loss
        step_offset += stage.steps
        following = stages[index + 1][0] if index + 1 < len(stages) else "eval"
        if trainer.is_global_zero:
            save_point(folder, ResumePoint(run_id, index + 1, following, 0, sorted(trained), weights(trained),
                                           metrics=dict(metrics), freeze_report=list(freeze_report),
                                           feature_log=dict(feature_log), rng=capture_rng()))
    store.log_text(client, run_id, "\n".join(freeze_report) + "\n", "freeze_policy.txt")
    save_checkpoint(model, cfg, trained, folder)
    log_batch(client, run_id, tags={"ablate.checkpoint": store.relative(folder),
                                    WEIGHTS_DIGEST: weights_digest(folder)})
    data.world = evaluation_world(data.world, cfg)  # a package's splits are written when first evaluated on
    feature_log["eval"] = stage_features(
        store.cache / "features", model, data, "eval", parse_splits(cfg.eval.splits), eval_size,
        cfg.train.precision, cfg.train.feature_cache, False, any(k.startswith("vision.") for k in trained))
    log_batch(client, run_id, tags={f"features.{k}": v[:5000] for k, v in feature_log.items()})

    progress.update(force=True, stage="eval")
    log_batch(client, run_id, metrics=metrics, step=step_offset)
    eval_metrics, rows, seconds = run_benchmark(model, assets, data, cfg)
    eval_metrics["time/eval_s"] = seconds
    record_evaluation(store, client, run_id, resolved, eval_metrics, rows)
    discard(folder)  # the run is complete: nothing to resume
    return metrics | eval_metrics


def stage_cost(name: str, module: MultimodalModule, callback: MlflowMetrics, samples: int, started: float,
               peak_mb: float) -> dict[str, float]:
    """A stage's cost metrics (`cost/<stage>/...`): training FLOPs per sample and in all (FLOPs of the first step
    per sample x the stage's samples), visual tokens per sample, samples/s and peak memory in this process."""
    cost = {f"cost/{name}/samples_per_s": callback.samples / max(time.perf_counter() - started, 1e-9),
            f"cost/{name}/peak_memory_mb": peak_mb}
    if module.cost:
        per_sample = module.cost["train_flops_per_sample"]
        cost |= {f"cost/{name}/train_flops_per_sample": per_sample,
                 f"cost/{name}/train_flops": per_sample * samples,
                 f"cost/{name}/visual_tokens": module.cost["visual_tokens"]}
    return cost


def last_logged_step(client, run_id: str, key: str) -> int:
    """The last step at which a metric was logged in a run, or -1."""
    return max((m.step for m in client.get_metric_history(run_id, key)), default=-1)


def trained_steps(config: RunConfig) -> int:
    """The run's last training step: where its evaluation metrics are logged."""
    return sum(stage.steps for _, stage in config.train.stages())


def predictions_text(rows: list[dict]) -> str:
    """Prediction rows as the JSON lines of a `predictions.jsonl` artifact."""
    return "".join(json.dumps(r) + "\n" for r in rows)


def record_evaluation(store: Store, client, run_id: str, resolved: ResolvedRun, metrics: dict[str, float],
                      rows: list[dict]) -> None:
    """Log one evaluation of a run: its metrics at the run's last training step (a later evaluation of the same
    weights supersedes them there), its prediction rows as `predictions.jsonl` (the latest evaluation, which
    reports read) and as `evals/<eval key>/predictions.jsonl` (every evaluation kept), and the tags naming it.
    The tags go last: an evaluation that dies half-way leaves the old evaluation key, so the next grid run
    scores the run again."""
    text = predictions_text(rows)
    store.log_text(client, run_id, text, f"evals/{resolved.eval_key}/predictions.jsonl")
    store.log_text(client, run_id, text, "predictions.jsonl")
    log_batch(client, run_id, metrics=metrics, step=trained_steps(resolved.config), tags={
        "ablate.eval_key": resolved.eval_key,
        "ablate.generation_key": resolved.generation_key,
        "ablate.eval_config": json.dumps(eval_settings(resolved.config), sort_keys=True),
    })


def run_benchmark(model, assets, data, cfg: RunConfig, blind: bool = False) -> tuple[dict, list[dict], float]:
    """Score the model on the configured benchmark splits; returns metrics, per-item rows and seconds."""
    from harness.data import NOISE_TOKENS
    from harness.evaluation import build_judge, evaluate
    from harness.placement import autocast_for

    started = time.perf_counter()
    judge = build_judge(cfg.eval.judge.name, cfg.eval.judge.options)
    with autocast_for(model, cfg.train.precision):  # on the model's device, in the dtype it trained under
        metrics, rows = evaluate(model, assets.tokenizer, data, cfg.eval, judge,
                                 junk_tokens=frozenset(NOISE_TOKENS), blind=blind)
    return metrics, rows, time.perf_counter() - started


def save_checkpoint(model, cfg: RunConfig, trained: set[str], folder: Path) -> None:
    """Save the parameters some stage trained (the frozen backbones come back from their sources) and the config."""
    import torch

    state = {k: v.detach().cpu() for k, v in model.state_dict().items() if k in trained}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "trainable.pt")
    (folder / "config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))

"""Score trained runs again without training them: train once, score many times.

A run's key hashes what was trained; its evaluation key hashes how it is scored (`harness/resolve.py`).
When a grid finds a finished run whose evaluation settings changed, it re-scores that run into the same MLflow run:
- only the judge changed: the saved predictions are judged again (no model is built);
- anything else in `eval.*` changed: the saved checkpoint is loaded and the benchmark generates again.
`ablate eval RUN` scores one saved run on demand (other splits, another judge, or blind) without touching the
run's own metrics: its results go under a `rescored/` or `blind/` prefix.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import yaml

from harness.config.schema import JudgeConfig, RunConfig
from harness.errors import AblateError
from harness.resolve import ResolvedRun
from harness.runner import (
    build_for,
    evaluation_world,
    predictions_text,
    quiet_libraries,
    record_evaluation,
    run_benchmark,
    stage_image_size,
)
from harness.tracking import Store, log_batch

log = logging.getLogger("ablate")
PREDICTIONS = "predictions.jsonl"


def load_saved(store: Store, target: str) -> tuple[RunConfig, Path, str | None]:
    """A checkpoint folder, or an MLflow run id whose run saved one -> (config, folder, run id or None)."""
    from harness.config.validate import build, check_layer, flatten, upgrade_saved

    folder, run_id = Path(target), None
    if not (folder / "config.yaml").is_file():
        if not store.exists():
            raise AblateError(f"{target}: not a checkpoint folder, and there is no MLflow store at {store.root}")
        try:
            run = store.client().get_run(target)
        except Exception:
            raise AblateError(
                f"{target}: neither a checkpoint folder (with config.yaml and trainable.pt) nor a run id in "
                f"{store.root}"
            ) from None
        run_id = target
        folder = _checkpoint_folder(store, run.data.tags)
        if not (folder / "config.yaml").is_file():
            raise AblateError(f"run {target} has no saved checkpoint (it may have failed before training ended)")
    if not (folder / "trainable.pt").is_file():
        raise AblateError(f"{folder}: checkpoint folder without trainable.pt")
    raw = yaml.safe_load((folder / "config.yaml").read_text())
    labels = {k: raw.pop(k) for k in ("variant", "scale", "seed")}
    config = build({**check_layer(upgrade_saved(flatten(raw)), str(folder / "config.yaml")), **labels})
    return config, folder, run_id


def _checkpoint_folder(store: Store, tags: dict[str, str]) -> Path:
    stored = tags.get("ablate.checkpoint")
    return store.locate(stored) if stored else Path("")


def restore(store: Store, config: RunConfig, folder: Path, benchmark_scale: int | None = None):
    """Rebuild a saved run's model with its trained weights, on its device and in the dtypes its own benchmark saw
    (those of its last stage); returns (model, assets, datamodule). `benchmark_scale`: the datamodule serves the
    benchmark of the run's world built at that scale (`larger_benchmark`); the model is the run's all the same."""
    import lightning as L
    import torch

    from harness.data import WorldDataModule
    from harness.model import apply_freeze_policy
    from harness.placement import hold_frozen_in_training_dtype, run_device

    # Seeded as the run was before it built its model: a backbone with `random` weights is not in the checkpoint
    # (only what trained is), so it must come back as the same draw, or the scores are another model's.
    L.seed_everything(config.seed, workers=True, verbose=False)
    assets, model_cfg, model = build_for(config, store)
    state = torch.load(folder / "trainable.pt", map_location="cpu", weights_only=True)
    missing = set(state) - set(model.state_dict())
    if missing:
        raise AblateError(f"{folder}/trainable.pt does not fit the model its config builds: {sorted(missing)[:3]}")
    model.load_state_dict(state, strict=False)
    stages = [stage for _, stage in config.train.stages()]
    if stages:
        apply_freeze_policy(model, model_cfg, stages[-1])
        hold_frozen_in_training_dtype(model, config.train.precision)
    model.to(run_device(config.train.accelerator))
    world = assets.world
    if benchmark_scale is not None and benchmark_scale != config.world.benchmark_scale:
        world = larger_benchmark(store, config, benchmark_scale)
    data = WorldDataModule(evaluation_world(world, config), config.data, assets.tokenizer,
                           image_size=stage_image_size(config, config.train.last_stage()),
                           batch_size=config.train.batch_size, seed=config.seed)
    return model, assets, data


def larger_benchmark(store: Store, config: RunConfig, scale: int):
    """The run's world built with `world.benchmark_scale=scale`, for its benchmark only: `scale` times the MME and
    probe items and, from 10 on, the `openvqa_image_10x` split (3,020 new items, drawn like the 302 of
    `openvqa_image`, which stay there unchanged: every item draws from its own seed). A trained run is scored on it
    without training again. The model, its zoo backbones and the tokenizer that turns the questions into ids stay
    the run's own: that world's vocabulary orders its words by their counts, benchmark included, so its ids
    differ."""
    from harness.data import build_world

    return build_world(dataclasses.replace(config.world, benchmark_scale=scale), store.cache)


def saved_predictions(store: Store, run, name: str = PREDICTIONS) -> list[dict] | None:
    """A run's latest prediction rows (or those of its artifact `name`, e.g. `rescored/predictions.jsonl`), or None
    when it has none that can be read."""
    path = store.artifact_file(run.info.artifact_uri, name)
    if path is None:
        try:
            path = Path(store.client().download_artifacts(run.info.run_id, name))
        except Exception:
            return None
    from harness.evaluation.benchmark import read_predictions

    return read_predictions(path)


def rejudge(rows: list[dict], judge: JudgeConfig) -> tuple[dict[str, float], list[dict]]:
    """Metrics and rows of saved predictions judged by `judge` (nothing is generated)."""
    from harness.data.vocab import NOISE_TOKENS
    from harness.evaluation import build_judge, judge_rows, score_rows

    rows = judge_rows(rows, build_judge(judge.name, judge.options))
    return score_rows(rows, NOISE_TOKENS), rows


def rescore(store: Store, run_id: str, resolved: ResolvedRun, threads: int | None = None) -> tuple[dict, str]:
    """Score a finished run again under `resolved`'s evaluation settings, into the same MLflow run; returns the
    metrics and how ('re-judged' or 're-generated'). The run stays FINISHED throughout: if this dies, the run keeps
    its earlier evaluation key and the next grid run scores it again."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    quiet_libraries()
    client = store.client()
    run = client.get_run(run_id)
    started = time.perf_counter()
    rows = None
    if run.data.tags.get("ablate.generation_key") == resolved.generation_key:  # the same questions, decoded alike
        rows = saved_predictions(store, run)
    if rows is not None:
        how = "re-judged"
        metrics, rows = rejudge(rows, resolved.config.eval.judge)
    else:
        how = "re-generated"
        folder = _checkpoint_folder(store, run.data.tags)
        if not (folder / "trainable.pt").is_file():
            raise AblateError(f"run {resolved.label} ({run_id}) has no saved checkpoint to score again; delete the "
                              "run to train it anew")
        model, assets, data = restore(store, resolved.config, folder)
        metrics, rows, _ = run_benchmark(model, assets, data, resolved.config)
    metrics["time/eval_s"] = time.perf_counter() - started
    record_evaluation(store, client, run_id, resolved, metrics, rows)
    return metrics, how


def evaluate_saved(store: Store, target: str, blind: bool = False, splits: str | None = None,
                   judge: str | None = None, benchmark_scale: int | None = None) -> tuple[dict, list]:
    """Score one saved run on demand; log to its MLflow run, under `blind/` or `rescored/`, when there is one.

    With only `judge` given, the run's saved predictions are judged again; otherwise the model is rebuilt from the
    checkpoint and generates (`splits` overrides the run's own, `blind` blanks every image, `benchmark_scale`
    draws the benchmark from the run's world built at that scale: more items, the same model)."""
    from harness.components import JUDGES
    from harness.evaluation import parse_splits

    if judge:
        JUDGES.get(judge)  # an unknown name fails here, with the known ones, before any model is built
    if benchmark_scale is not None and benchmark_scale < 1:
        raise AblateError(f"--benchmark-scale must be at least 1, got {benchmark_scale}")
    if splits:
        parse_splits(splits)
    config, folder, run_id = load_saved(store, target)
    if run_id is not None:
        warn_if_retrained(store.client().get_run(run_id), folder)
    own_judge = config.eval.judge.name  # what a scoring without --judge judged with
    eval_cfg = config.eval
    if splits:
        eval_cfg = dataclasses.replace(eval_cfg, splits=splits)
    if judge:
        eval_cfg = dataclasses.replace(eval_cfg, judge=JudgeConfig(name=judge))
    config = dataclasses.replace(config, eval=eval_cfg)
    rows = None
    if judge and not splits and not blind and not benchmark_scale and run_id is not None:
        rows = saved_predictions(store, store.client().get_run(run_id))
    if rows is not None:
        metrics, rows = rejudge(rows, eval_cfg.judge)
    else:
        quiet_libraries()
        model, assets, data = restore(store, config, folder, benchmark_scale)
        metrics, rows, _ = run_benchmark(model, assets, data, config, blind=blind)
    if run_id is not None:
        record_scoring(store, run_id, "blind/" if blind else "rescored/", metrics, rows,
                       str(benchmark_scale or config.world.benchmark_scale), eval_cfg.judge.name, own_judge,
                       parse_splits(eval_cfg.splits))
    return metrics, rows


def warn_if_retrained(run, folder: Path) -> None:
    """Say so when a run's checkpoint folder (shared by every run of its key) no longer holds the weights the run
    was scored with: another run of the same key trained into it since (`--no-reuse`, a sweep trial)."""
    from harness.resume import WEIGHTS_DIGEST, weights_digest

    logged = run.data.tags.get(WEIGHTS_DIGEST)
    if logged and logged != (now := weights_digest(folder)):
        log.warning("run %s: its checkpoint folder %s now holds other weights (sha256 %s, the run's were %s): "
                    "another run of the same key trained into it since; these scores are that model's",
                    run.info.run_id, folder, now, logged)


def record_scoring(store: Store, run_id: str, prefix: str, metrics: dict, rows: list[dict], scale: str, judge: str,
                   own_judge: str, splits: list[str]) -> None:
    """Log an on-demand scoring under `prefix`: its rows (with an earlier scoring's rows of other splits, see
    `earlier_rows`) first, then its metrics and the tags that name it, as a run's own evaluation is logged. Held
    under the run's lock, so two scorings of one run, or a grid copying it, never interleave."""
    from harness.grid import run_lock

    client = store.client()
    run = client.get_run(run_id)
    with run_lock(store, run.data.tags.get("ablate.run_key", run_id), wait_s=600) as held:
        if not held:
            raise AblateError(f"run {run_id} stayed locked by another process for 10 minutes (training it, or "
                              "scoring it); its scores were not logged. Run the same command again once it is done")
        run = client.get_run(run_id)  # as of now, under the lock
        kept = earlier_rows(store, run, prefix, scale, judge, own_judge, splits)
        store.log_text(client, run_id, predictions_text(kept + rows), f"{prefix}{PREDICTIONS}")
        log_batch(client, run_id, metrics={prefix + k: v for k, v in metrics.items()},
                  tags={f"ablate.{prefix}benchmark_scale": scale, f"ablate.{prefix}judge": judge,
                        f"ablate.{prefix}splits": ",".join(dict.fromkeys([r["split"] for r in kept] + splits))})


def earlier_rows(store: Store, run, prefix: str, scale: str, judge: str, own_judge: str,
                 splits: list[str]) -> list[dict]:
    """The rows of a run's last `prefix` scoring (`rescored/`, `blind/`) to keep beside a new one on `splits`: those
    of the other splits, when both drew the benchmark at the same scale and judged with the same judge (a scoring
    logged before the judge was tagged judged with the run's own, `own_judge`). So `ablate eval RUN --splits b`
    after `--splits a` leaves both in `<prefix>predictions.jsonl`, as MLflow keeps both splits' metrics; a scoring
    at another scale or by another judge replaces them all, and says so."""
    tags = run.data.tags
    before = [s for s in tags.get(f"ablate.{prefix}splits", "").split(",") if s and s not in splits]
    earlier = (tags.get(f"ablate.{prefix}benchmark_scale"), tags.get(f"ablate.{prefix}judge", own_judge))
    if earlier != (scale, judge):
        if before and earlier[0] is not None:
            log.warning("run %s: this scoring (benchmark scale %s, judge %s) replaces the earlier %s one of %s "
                        "(scale %s, judge %s); give the same --benchmark-scale and judge to keep both",
                        run.info.run_id, scale, judge, prefix.rstrip("/"), ", ".join(before), *earlier)
        return []
    return [row for row in saved_predictions(store, run, f"{prefix}{PREDICTIONS}") or [] if row["split"] not in splits]

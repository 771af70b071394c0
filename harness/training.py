"""The Lightning side of a run: the training module, the LR schedule, and metric logging into MLflow."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import lightning as L
import torch

from harness.config.schema import StageConfig
from harness.errors import AblateError
from harness.model.mllm import model_inputs
from harness.optim import NoDecay, adamw

if TYPE_CHECKING:  # the module itself runs without mlflow (benchmarks/gpu_check.py on a bare GPU machine)
    from mlflow.tracking import MlflowClient

    from harness.progress import RunProgress


def warmup_linear_decay(step: int, total: int, warmup_frac: float) -> float:
    """LR multiplier: linear warmup over the first `warmup_frac` of steps, then linear decay to 0 (the paper's)."""
    warmup = max(1, math.ceil(total * warmup_frac))
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


class Pruned(Exception):  # noqa: N818 (a decision, not an error)
    """A sweep's pruner stopped the run early: it is marked pruned, not failed (`harness/sweep.py`)."""


class NonFiniteLoss(AblateError):
    """Training produced a NaN or infinite loss; the run is marked failed and the grid goes on."""


class MultimodalModule(L.LightningModule):
    """One training stage: next-token cross-entropy on the answer tokens; AdamW over the trainable parameters.

    A resumed stage passes the steps it already trained (`done`) and the optimizer and schedule states saved then
    (`restore`): Lightning's own counter restarts at 0, so `done` is added wherever a step is named."""

    def __init__(self, model: torch.nn.Module, stage: StageConfig, weight_decay: float, done: int = 0,
                 restore: dict | None = None, no_decay: NoDecay = "1d", pack: bool = False) -> None:
        super().__init__()
        self.model = model
        self.pack = pack  # the LLM on packed rows (harness/model/packing.py)
        self.stage = stage
        self.weight_decay, self.no_decay = weight_decay, no_decay
        self.done, self.restore = done, restore
        # Measured on the stage's first step: training FLOPs (forward and backward, torch's FlopCounterMode) and
        # visual tokens the LLM reads, per sample. Counting changes no number the step computes.
        self.cost: dict[str, float] = {}
        self._counting: tuple | None = None

    def on_train_start(self) -> None:
        if self.restore:  # after Lightning built the optimizer and schedule, before the first step
            self.trainer.optimizers[0].load_state_dict(self.restore["optimizer"])
            self.trainer.lr_scheduler_configs[0].scheduler.load_state_dict(self.restore["scheduler"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.cost or self._counting is not None:
            out = self.model(**model_inputs(batch), labels=batch["labels"], pack=self.pack)
        else:
            out = self._counted_forward(batch)
        if not torch.isfinite(out.loss):
            if self._counting is not None:
                self._counting[0].__exit__(None, None, None)
                self._counting = None
            raise NonFiniteLoss(f"non-finite training loss ({out.loss.item()}) at step {self.done + self.global_step}")
        self.log("train/loss", out.loss.detach(), batch_size=batch["frames_mask"].shape[0])
        return out.loss

    def _counted_forward(self, batch: dict[str, torch.Tensor]):
        """The forward of the first step, inside a FLOP counter that `backward` closes; visual tokens per sample
        with an image or video, from the connector's output mask."""
        from torch.utils.flop_counter import FlopCounterMode

        seen: list[float] = []
        has_frames = batch["frames_mask"].any(1)

        def visual(module, args, output) -> None:
            if has_frames.any():
                seen.append(float(output[1][has_frames.to(output[1].device)].sum(1).float().mean()))

        hook = self.model.connector.register_forward_hook(visual)
        counter = FlopCounterMode(display=False)
        counter.__enter__()
        try:
            out = self.model(**model_inputs(batch), labels=batch["labels"], pack=self.pack)
        except BaseException:
            counter.__exit__(None, None, None)
            raise
        finally:
            hook.remove()
        self._counting = (counter, batch["frames_mask"].shape[0], seen)
        return out

    def backward(self, loss: torch.Tensor, *args, **kwargs) -> None:
        if self._counting is None:
            return super().backward(loss, *args, **kwargs)
        counter, samples, seen = self._counting
        try:
            super().backward(loss, *args, **kwargs)
        finally:
            counter.__exit__(None, None, None)
            self._counting = None
        self.cost = {"train_flops_per_sample": counter.get_total_flops() / samples,
                     "visual_tokens": seen[0] if seen else 0.0}

    def configure_optimizers(self):
        if not any(p.requires_grad for p in self.model.parameters()):
            raise AblateError("the freeze policy leaves no trainable parameters; nothing to train")
        optimizer = adamw(self.model, self.stage.lr, self.weight_decay, no_decay=self.no_decay)
        total = self.stage.steps
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_linear_decay(step, total, self.stage.warmup_frac)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory window: the accelerator's allocator, or on the CPU the process's peak resident set
    (Linux `clear_refs`; elsewhere the process's lifetime peak stands)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory since `reset_peak_memory`, in MB: allocated on the accelerator, resident on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class MlflowMetrics(L.Callback):
    """Collects training metrics every `every` steps and writes them to MLflow in batches (sqlite is slow per call).

    A resumed stage starts at stage step `done`; steps up to `logged_through` (on the run's step axis) were logged
    before the run was killed and are not logged again, so no metric step appears twice."""

    def __init__(
        self, client: MlflowClient, run_id: str, every: int, prefix: str = "train", step_offset: int = 0,
        flush_at: int = 200, done: int = 0, logged_through: int = -1,
    ) -> None:
        self.client, self.run_id, self.every, self.flush_at = client, run_id, max(1, every), flush_at
        self.prefix, self.offset = prefix, step_offset  # stages share one step axis: step = offset + stage step
        self.done, self.logged_through = done, logged_through
        self.pending: list[tuple[str, float, int]] = []
        self.started = time.perf_counter()
        self.samples = 0
        self.last_loss = float("nan")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.is_global_zero:  # one writer per run: rank 0 logs, the other ranks only train
            return
        self.samples += batch["frames_mask"].shape[0]
        step = self.done + trainer.global_step
        self.last_loss = float(outputs["loss"].detach())
        at = self.offset + step
        if (step % self.every == 0 or trainer.global_step == trainer.max_steps) and at > self.logged_through:
            elapsed = time.perf_counter() - self.started
            self.pending.append((f"{self.prefix}/loss", self.last_loss, at))
            self.pending.append((f"{self.prefix}/lr", trainer.optimizers[0].param_groups[0]["lr"], at))
            self.pending.append((f"{self.prefix}/samples_per_s", self.samples / max(elapsed, 1e-9), at))
        if len(self.pending) >= self.flush_at:
            self.flush()

    def on_train_end(self, trainer, pl_module) -> None:
        self.flush()

    def flush(self) -> None:
        if self.pending:
            from harness.tracking import log_metric_series

            log_metric_series(self.client, self.run_id, self.pending)
            self.pending = []


class ResumePoints(L.Callback):
    """Every `every` stage steps (not at the stage's end, which the runner saves itself), hands the trainer to
    `save(trainer, stage_step)`, which writes a resume point (on rank 0 only)."""

    def __init__(self, every: int, done: int, total: int, save) -> None:
        self.every, self.done, self.total, self.save = every, done, total, save

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = self.done + trainer.global_step
        if self.every and step % self.every == 0 and step < self.total and trainer.is_global_zero:
            self.save(trainer, step)  # one writer: the ranks of a data-parallel run hold the same state


class ProgressCallback(L.Callback):
    """Feeds a RunProgress from one Lightning stage (`done`: steps trained before a resume)."""

    def __init__(self, progress: RunProgress, stage: str, total: int, done: int = 0) -> None:
        self.progress, self.stage, self.total, self.done = progress, stage, total, done
        self.samples, self.started = 0, time.perf_counter()

    def on_train_start(self, trainer, pl_module) -> None:
        self.progress.update(force=True, stage=self.stage, step=self.done, total=self.total)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.is_global_zero:
            return
        self.samples += batch["frames_mask"].shape[0]
        elapsed = time.perf_counter() - self.started
        self.progress.update(step=self.done + trainer.global_step, loss=float(outputs["loss"].detach()),
                             samples_per_s=self.samples / max(elapsed, 1e-9),
                             steps_per_s=trainer.global_step / max(elapsed, 1e-9))

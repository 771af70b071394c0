"""Where a run's model lives and in which dtype.

One device from the first stage to the last evaluation: the model is placed once, each stage's Lightning fit
leaves it where it is (Lightning's own teardown moves the whole model to the CPU after every fit: 34-53 s at
paper scale), and the benchmark generates on the model's device under the autocast of the run's precision.
Frozen weights are held in the training dtype (bf16 under `bf16-mixed`); trainable ones stay fp32 master weights.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import torch
from torch import nn

AUTOCAST = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}  # autocast mode name -> dtype


def autocast_mode(precision: str) -> str | None:
    """The autocast a Lightning precision setting runs the model under: "bf16", "fp16" or None."""
    return {"bf16-mixed": "bf16", "16-mixed": "fp16"}.get(precision)


def run_device(accelerator: str) -> torch.device:
    """The device a run's model lives on: this process's GPU for `gpu`/`cuda` (and `auto` when one is present),
    else the CPU. Under DDP each process takes the GPU of its LOCAL_RANK."""
    wants_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if wants_gpu and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def module_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter (the CPU for a model without parameters, or a stand-in that is not
    an `nn.Module`)."""
    params = model.parameters() if hasattr(model, "parameters") else ()
    return next((p.device for p in params), torch.device("cpu"))


def hold_frozen_in_training_dtype(model: nn.Module, precision: str) -> dict[str, int]:
    """Cast frozen floating-point parameters to the autocast dtype of `precision` and trainable ones to fp32.

    Called after each stage's freeze policy, so a component that starts training later (the LLM of
    `full_ft_llm` in finetuning) gets fp32 master weights back. Under `32-true` everything stays fp32.
    Returns the number of parameters now held in each dtype.
    """
    low = AUTOCAST[autocast_mode(precision)]
    counts: dict[str, int] = {}
    for p in model.parameters():
        if p.is_floating_point():
            want = torch.float32 if p.requires_grad or low is None else low
            if p.dtype != want:
                p.data = p.data.to(want)
            counts[str(want).removeprefix("torch.")] = counts.get(str(want).removeprefix("torch."), 0) + p.numel()
    return counts


def autocast_on(device: torch.device | str, mode: str | None):
    """Autocast on `device`'s type in `mode` ("bf16", "fp16"), or a disabled one for None."""
    dtype = AUTOCAST[mode]
    return torch.autocast(torch.device(device).type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


@contextlib.contextmanager
def autocast_for(model: nn.Module, precision: str) -> Iterator[None]:
    """Autocast on the model's own device type with the dtype the run trained under (off under `32-true`)."""
    with autocast_on(module_device(model), autocast_mode(precision)):
        yield


def to_device(batch: dict, device: torch.device) -> dict:
    """A batch with its tensors on `device` (lists of item info stay as they are)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class _StayOnDevice:
    """Lightning strategy mixin: teardown leaves the model on its device (and drops the stage's optimizer, which
    the next stage replaces) instead of moving both to the CPU."""

    def teardown(self) -> None:
        module = self.lightning_module
        self.optimizers = []
        if module is None:
            return super().teardown()
        module.cpu = lambda: module  # Strategy.teardown calls lightning_module.cpu(); the next stage needs it here
        try:
            super().teardown()
        finally:
            del module.cpu


@functools.cache
def _strategy_classes():
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, SingleDeviceStrategy

    return (type("StaySingleDeviceStrategy", (_StayOnDevice, SingleDeviceStrategy), {}),
            type("StayDDPStrategy", (_StayOnDevice, DDPStrategy), {}),
            type("StayFSDPStrategy", (_StayOnDevice, FSDPStrategy), {}))


def stage_strategy(accelerator: str, devices: int, num_nodes: int = 1, kind: str = "auto"):
    """A Lightning strategy for one stage's fit that keeps the model on its device afterwards: single-device, DDP
    (NCCL on GPUs, gloo on CPUs) or FSDP when the run spans several devices or nodes (`train.strategy`)."""
    single, ddp, fsdp = _strategy_classes()
    device = run_device(accelerator)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if kind == "fsdp":
        return fsdp(process_group_backend=backend)
    if devices * num_nodes > 1:
        return ddp(process_group_backend=backend)
    return single(device=device)

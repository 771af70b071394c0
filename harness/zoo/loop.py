"""The one training loop every zoo entry uses: AdamW, linear warmup then cosine decay, bf16 autocast on CPU."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from harness.optim import adamw
from harness.progress import ProgressLine


def autocast(device: torch.device, enabled: bool = True) -> torch.autocast:
    """bf16 mixed precision: up to 2x faster than fp32 on this CPU for the larger zoo models (the smallest ones
    run faster in fp32, where autocast's casts cost more than the matmuls they speed up)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def fit(
    model: nn.Module,
    step_loss: Callable[[int], torch.Tensor],
    steps: int,
    lr: float,
    weight_decay: float = 0.01,
    warmup_frac: float = 0.05,
    log_every: int = 25,
    bf16: bool = True,
    name: str = "",
) -> list[tuple[int, float]]:
    """Train `model` for `steps` steps on `step_loss(step)`; return (step, loss) every `log_every` steps. With a
    `name`, a progress line (`harness.progress.ProgressLine`): step, loss, ETA."""
    device = next(model.parameters()).device
    opt = adamw(model, lr, weight_decay, betas=(0.9, 0.98))  # the runner's builder: norms and biases not decayed
    warmup = max(1, int(steps * warmup_frac))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    model.train()
    history: list[tuple[int, float]] = []
    running = 0.0
    shown = ProgressLine(f"zoo {name}: step", steps) if name else None
    for step in range(steps):
        with autocast(device, bf16):
            loss = step_loss(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        running += loss.item()
        if (step + 1) % log_every == 0 or step == steps - 1:
            history.append((step + 1, running / ((step % log_every) + 1)))
            running = 0.0
        if shown is not None:
            shown.update(step + 1, f"loss {history[-1][1] if history else loss.item():.3f}")
    if shown is not None:
        shown.close()
    model.eval()
    return history

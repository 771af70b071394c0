"""The project's one optimizer builder: every stage of a run and every zoo backbone trains with `adamw`.

Weight decay acts on matrices only (`no_decay="1d"`, the default): biases, norm weights, the cross-attention's tanh
gates and the adapters' scales (every tensor with fewer than two dimensions) are exempt, the usual transformer
recipe. Decaying a gate that starts at zero pulls it back towards zero; decaying a norm weight shrinks a scale
the network chose. `no_decay="none"` decays every trainable tensor: the runner's recipe before this setting
existed, kept so that runs trained then keep their key and can be reproduced (`harness/resolve.py`
NEUTRAL_WHEN_ADDED).
"""

from __future__ import annotations

from typing import get_args

import torch
from torch import nn

from harness.config.schema import NoDecay

NO_DECAY_RULES: tuple[str, ...] = get_args(NoDecay)


def param_groups(model: nn.Module, weight_decay: float, no_decay: NoDecay = "1d") -> list[dict]:
    """AdamW parameter groups over `model`'s trainable tensors: decayed matrices, then the exempt ones (empty
    groups left out)."""
    if no_decay not in NO_DECAY_RULES:
        raise ValueError(f"no_decay={no_decay!r}: expected one of {', '.join(NO_DECAY_RULES)}")
    params = [p for p in model.parameters() if p.requires_grad]
    if no_decay == "none":
        groups = [{"params": params, "weight_decay": weight_decay}]
    else:
        groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def adamw(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
          eps: float = 1e-8, no_decay: NoDecay = "1d") -> torch.optim.AdamW:
    """AdamW over `model`'s trainable parameters with `param_groups`' decay rule; the fused kernel when they all
    sit on a CUDA device (one kernel for all tensors instead of several per tensor)."""
    groups = param_groups(model, weight_decay, no_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters; nothing to optimize")
    on_cuda = all(p.device.type == "cuda" for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True if on_cuda else None)

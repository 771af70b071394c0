"""Computing only where a mask is True: padding frames and padding tokens are most of a mixed batch."""

from __future__ import annotations

from collections.abc import Callable

import torch


def on_real_rows(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`fn` applied, as one batch, to the rows of `x` [B, N, ...] where `mask` [B, N] is True; zeros at the other
    rows. The result is [B, N, *fn's row shape]."""
    rows = mask.flatten().nonzero().squeeze(1)
    out = fn(x.flatten(0, 1).index_select(0, rows))
    full = out.new_zeros(mask.numel(), *out.shape[1:]).index_copy(0, rows, out)
    return full.view(*mask.shape, *out.shape[1:])

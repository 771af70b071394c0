"""Fusion: how the visual tokens [B, Q, D] (+ mask [B, Q]) enter the LLM.

Each entry of `harness.components.FUSIONS` is a factory `(cfg: FusionConfig, llm) -> nn.Module` with
- `inputs(visual, vmask, embeds, mask, left_padded) -> (embeds, mask)`: the LLM's input embeddings and mask;
- `attach(visual, vmask)`: a context manager that makes the visual tokens available inside the LLM.
`prefix` (Lynx) prepends the visual tokens; `cross_attn` (Flamingo) inserts gated cross-attention blocks.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager

import torch
from torch import nn

from harness.config.schema import FusionConfig
from harness.model.connectors import CrossAttention, ffn
from harness.model.llm import decoder_layers
from harness.model.packing import Packing


class Prefix(nn.Module):
    """Visual tokens prepended to the text embeddings; masked visual tokens get attention_mask 0."""

    def inputs(self, visual, vmask, embeds, mask, left_padded: bool = False):
        embeds = torch.cat([visual.to(embeds.dtype), embeds], dim=1)  # [B, Q+T, D]
        mask = torch.cat([vmask.to(mask.dtype), mask], dim=1)  # [B, Q+T]
        if left_padded:
            # [visual, pads, prompt] -> [pads, visual, prompt]: a stable sort on the mask moves every 0 first and
            # keeps the order of the rest, so generation sees one contiguous left-padded sequence.
            order = torch.argsort(mask, dim=1, stable=True)
            embeds = embeds.gather(1, order[..., None].expand_as(embeds))
            mask = mask.gather(1, order)
        return embeds, mask

    @contextmanager
    def attach(self, visual, vmask, packing=None):
        yield


class GatedCrossAttnBlock(nn.Module):
    """Flamingo's gated xattn-dense block: h + tanh(a) * xattn(h, visual), then + tanh(f) * FFN; a = f = 0 at init."""

    def __init__(self, dim: int, heads: int, ffn_mult: int = 4) -> None:
        super().__init__()
        self.attn = CrossAttention(dim, dim, heads, dim // heads)
        self.ffn = ffn(dim, ffn_mult)
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.ffn_gate = nn.Parameter(torch.zeros(1))

    def forward(self, h: torch.Tensor, visual: torch.Tensor, vmask: torch.Tensor) -> torch.Tensor:
        # h [B, T, D] text hidden states; visual [B, Q, D]; rows without visual tokens pass through unchanged.
        has = vmask.any(1)[:, None, None].to(h.dtype)
        h = h + has * self.attn_gate.tanh().to(h.dtype) * self.attn(h, visual.to(h.dtype), vmask)
        return h + has * self.ffn_gate.tanh().to(h.dtype) * self.ffn(h)


class CrossAttnFusion(nn.Module):
    """Gated cross-attention blocks run before decoder layers i with (i + 1) % every == 0 (forward pre-hooks)."""

    def __init__(self, cfg: FusionConfig, llm: nn.Module) -> None:
        super().__init__()
        dim = llm.config.hidden_size
        layers = [layer for i, layer in enumerate(decoder_layers(llm)) if (i + 1) % cfg.every == 0]
        self.blocks = nn.ModuleList(GatedCrossAttnBlock(dim, cfg.heads) for _ in layers)
        for layer, block in zip(layers, self.blocks, strict=True):
            layer.register_forward_pre_hook(functools.partial(self._pre_hook, block), with_kwargs=True)
        self._visual: tuple[torch.Tensor, torch.Tensor] | None = None
        self._packing: Packing | None = None

    def inputs(self, visual, vmask, embeds, mask, left_padded: bool = False):
        return embeds, mask

    @contextmanager
    def attach(self, visual: torch.Tensor, vmask: torch.Tensor, packing: Packing | None = None):
        """Visual tokens for the LLM calls inside the block (every decode step of generate sees the same ones).
        With a `packing`, the LLM's rows are packed samples: each block unpacks them, so every sample reads its own
        visual tokens, and packs its output again."""
        self._visual = (visual, vmask)
        self._packing = packing
        try:
            yield
        finally:
            self._visual = self._packing = None

    def _pre_hook(self, block: GatedCrossAttnBlock, layer: nn.Module, args: tuple, kwargs: dict):
        if self._visual is None:  # the LLM called on its own: text only
            return None
        visual, vmask = self._visual
        h = args[0] if args else kwargs["hidden_states"]
        if self._packing is not None:
            h = self._packing.pack(block(self._packing.unpack(h), visual, vmask))
        else:
            if h.shape[0] != visual.shape[0]:  # beam search: HF repeats each item num_beams times (repeat_interleave)
                n = h.shape[0] // visual.shape[0]
                visual, vmask = visual.repeat_interleave(n, 0), vmask.repeat_interleave(n, 0)
            h = block(h, visual, vmask)
        if args:
            return (h, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": h}


def prefix(cfg: FusionConfig, llm: nn.Module) -> nn.Module:
    """Lynx: visual tokens as a prefix of the text."""
    return Prefix()


def cross_attn(cfg: FusionConfig, llm: nn.Module) -> nn.Module:
    """Flamingo: gated cross-attention to the visual tokens before every `cfg.every`-th decoder layer."""
    return CrossAttnFusion(cfg, llm)

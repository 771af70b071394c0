"""Connectors: vision tokens [B, N, vision_dim] + mask [B, N] -> LLM-width visual tokens [B, Q, llm_dim] + mask.

A connector (`harness.components.CONNECTORS`) is a factory `(cfg: ConnectorConfig, vision_dim, llm_dim) ->
nn.Module` whose forward is `(x, mask) -> (tokens, mask)`; mask True = a real token (False: a padding frame or a
text-only row)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.config.schema import ConnectorConfig
from harness.model.masks import on_real_rows


def key_mask(mask: torch.Tensor) -> torch.Tensor:
    """[B, N] key mask -> [B, 1, 1, N] SDPA mask; rows with no real key attend to all (no NaN; masked later)."""
    return (mask | ~mask.any(1, keepdim=True))[:, None, None, :]


class CrossAttention(nn.Module):
    """Multi-head attention of queries [B, L, dim] to keys/values [B, N, kv_dim] (pre-norm both sides)."""

    def __init__(self, dim: int, kv_dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(kv_dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(kv_dim, 2 * inner, bias=False)
        self.proj = nn.Linear(inner, dim, bias=False)

    def forward(self, q: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, _ = q.shape
        k, v = self.keys_values(x, mask).chunk(2, dim=-1)  # each [B, N, inner]
        split = lambda t: t.view(B, t.shape[1], self.heads, -1).transpose(1, 2)  # noqa: E731  [B, h, *, hd]
        out = F.scaled_dot_product_attention(split(self.to_q(self.norm_q(q))), split(k), split(v), key_mask(mask))
        return self.proj(out.transpose(1, 2).reshape(B, L, -1))

    def keys_values(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, N, 2 * inner] keys and values of the real tokens only, zeros where `mask` is False.

        Padding frames are most of a mixed batch's tokens (an image in a batch with a 5-frame video has 4), so
        projecting only the real ones saves most of this product; attention never reads a masked key (its weight is
        exactly 0, and a row without real keys is masked downstream), so the result is the same."""
        project = lambda t: self.to_kv(self.norm_kv(t))  # noqa: E731
        return project(x) if bool(mask.all()) else on_real_rows(project, x, mask)


def ffn(dim: int, mult: int) -> nn.Sequential:
    """Pre-norm GELU feed-forward, dim -> mult*dim -> dim."""
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, mult * dim), nn.GELU(), nn.Linear(mult * dim, dim))


class ResamplerLayer(nn.Module):
    """Queries cross-attend to the vision tokens (keys/values from the vision tokens only), then an FFN."""

    def __init__(self, dim: int, kv_dim: int, heads: int, head_dim: int, ffn_mult: int) -> None:
        super().__init__()
        self.attn = CrossAttention(dim, kv_dim, heads, head_dim)
        self.ffn = ffn(dim, ffn_mult)

    def forward(self, q: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q = q + self.attn(q, x, mask)  # q [B, Q, dim], x [B, N, kv_dim]
        return q + self.ffn(q)


class Resampler(nn.Module):
    """Perceiver-style resampler (Lynx): `num_queries` learned queries at LLM width read the vision tokens."""

    def __init__(self, cfg: ConnectorConfig, vision_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(cfg.num_queries, llm_dim) * 0.02)
        self.layers = nn.ModuleList(
            ResamplerLayer(llm_dim, vision_dim, cfg.heads, cfg.head_dim, cfg.ffn_mult) for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(llm_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.queries.expand(x.shape[0], -1, -1).to(x.dtype)  # [B, Q, llm_dim]
        for layer in self.layers:
            q = layer(q, x, mask)
        return self.norm(q), mask.any(1, keepdim=True).expand(-1, q.shape[1])  # a row without tokens: all masked


class PerToken(nn.Module):
    """Apply `net` to every vision token: Q = N, the mask passes through."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(x), mask


def resampler(cfg: ConnectorConfig, vision_dim: int, llm_dim: int) -> nn.Module:
    """Lynx's resampler: Q = cfg.num_queries visual tokens."""
    return Resampler(cfg, vision_dim, llm_dim)


def linear(cfg: ConnectorConfig, vision_dim: int, llm_dim: int) -> nn.Module:
    """One Linear applied to every vision token: Q = N."""
    return PerToken(nn.Linear(vision_dim, llm_dim))


def mlp(cfg: ConnectorConfig, vision_dim: int, llm_dim: int) -> nn.Module:
    """LLaVA-1.5's two-layer GELU MLP on every vision token: Q = N."""
    return PerToken(nn.Sequential(nn.Linear(vision_dim, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim)))

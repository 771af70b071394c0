"""Connectors: map vision tokens [B, N, vision_dim] to LLM-width visual tokens [B, Q, llm_dim].

Each entry of `CONNECTORS` is a factory `(cfg: ConnectorConfig, vision_dim, llm_dim) -> nn.Module`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.config.schema import ConnectorConfig
from harness.registry import Registry

CONNECTORS: Registry = Registry("connector")


class ResamplerLayer(nn.Module):
    """Queries cross-attend to the vision tokens (keys/values from the vision tokens only), then an FFN."""

    def __init__(self, dim: int, kv_dim: int, heads: int, head_dim: int, ffn_mult: int) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(kv_dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(kv_dim, 2 * inner, bias=False)
        self.proj = nn.Linear(inner, dim, bias=False)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.GELU(), nn.Linear(ffn_mult * dim, dim))

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # q: [B, Q, dim] queries, x: [B, N, kv_dim] vision tokens
        B, Q, _ = q.shape
        k, v = self.to_kv(self.norm_kv(x)).chunk(2, dim=-1)  # each [B, N, inner]
        split = lambda t: t.view(B, t.shape[1], self.heads, -1).transpose(1, 2)  # noqa: E731  [B, h, L, hd]
        out = F.scaled_dot_product_attention(split(self.to_q(self.norm_q(q))), split(k), split(v))
        q = q + self.proj(out.transpose(1, 2).reshape(B, Q, -1))
        return q + self.ffn(self.norm_ffn(q))


class Resampler(nn.Module):
    """Perceiver-style resampler (Lynx): `num_queries` learned queries at LLM width read the vision tokens."""

    def __init__(self, cfg: ConnectorConfig, vision_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(cfg.num_queries, llm_dim) * 0.02)
        self.layers = nn.ModuleList(
            ResamplerLayer(llm_dim, vision_dim, cfg.heads, cfg.head_dim, cfg.ffn_mult)
            for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(llm_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.queries.expand(x.shape[0], -1, -1)  # [B, Q, llm_dim]
        for layer in self.layers:
            q = layer(q, x)
        return self.norm(q)


@CONNECTORS.register("resampler")
def resampler(cfg: ConnectorConfig, vision_dim: int, llm_dim: int) -> nn.Module:
    """Lynx's resampler: Q = cfg.num_queries visual tokens."""
    return Resampler(cfg, vision_dim, llm_dim)


@CONNECTORS.register("linear")
def linear(cfg: ConnectorConfig, vision_dim: int, llm_dim: int) -> nn.Module:
    """One Linear applied to every vision token: Q = N."""
    return nn.Linear(vision_dim, llm_dim)


@CONNECTORS.register("mlp")
def mlp(cfg: ConnectorConfig, vision_dim: int, llm_dim: int) -> nn.Module:
    """LLaVA-1.5's two-layer MLP on every vision token: Q = N."""
    return nn.Sequential(nn.Linear(vision_dim, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim))

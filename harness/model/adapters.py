"""Parameter-efficient tuning inside the LLM: Lynx's bottleneck adapters, LoRA (peft), or none.

An adapter (`harness.components.ADAPTERS`) is a factory `(cfg: AdapterConfig, llm) -> nn.ModuleList` that inserts
its adapters into `llm` in place and returns the modules holding their parameters (the freeze policy counts them as
"adapters"). A bottleneck adapter lives at `layer.adapter` (it moves, saves and loads with the LLM) and a forward
hook on the layer rewrites the layer's output; LoRA is injected by peft into the attention projections, so the LLM
stays a plain transformers model and its `generate` works unchanged."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from harness.config.schema import AdapterConfig
from harness.errors import AblateError
from harness.model.llm import decoder_layers

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


class BottleneckAdapter(nn.Module):
    """h + scale * up(SiLU(down(LayerNorm(h)))), with `scale` a learnable scalar."""

    def __init__(self, dim: int, reduction: int, init_scale: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.down = nn.Linear(dim, dim // reduction)
        self.up = nn.Linear(dim // reduction, dim)
        self.scale = nn.Parameter(torch.tensor(float(init_scale)))
        # Small init (HF's initializer_range) so a pretrained LLM is barely disturbed at the start.
        for lin in (self.down, self.up):
            nn.init.normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.scale * self.up(nn.functional.silu(self.down(self.norm(h))))


def _adapter_hook(layer: nn.Module, args: tuple, output):
    # transformers 5 decoder layers return the hidden states tensor; older ones a tuple (hidden_states, ...).
    if isinstance(output, tuple):
        return (layer.adapter(output[0]), *output[1:])
    return layer.adapter(output)


def bottleneck(cfg: AdapterConfig, llm: PreTrainedModel) -> nn.ModuleList:
    """Insert a bottleneck adapter after blocks i with (i + 1) % every == 0 (every=2: blocks 1, 3, 5, ...)."""
    inserted = nn.ModuleList()
    for i, layer in enumerate(decoder_layers(llm)):
        if (i + 1) % cfg.every:
            continue
        ref = next(layer.parameters())
        layer.adapter = BottleneckAdapter(llm.config.hidden_size, cfg.reduction, cfg.init_scale).to(
            device=ref.device, dtype=ref.dtype
        )
        layer.register_forward_hook(_adapter_hook)
        inserted.append(layer.adapter)
    return inserted


def lora(cfg: AdapterConfig, llm: PreTrainedModel) -> nn.ModuleList:
    """LoRA (rank cfg.lora_rank, alpha cfg.lora_alpha) on the q/k/v/o attention projections, via peft."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    names = {name.rsplit(".", 1)[-1] for name, _ in llm.named_modules()}
    if not set(LORA_TARGETS) <= names:
        raise AblateError(f"lora needs {LORA_TARGETS} projections; {type(llm).__name__} has none of them")
    config = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules=LORA_TARGETS)
    inject_adapter_in_model(config, llm)
    layers = [layer for layer in llm.modules() if isinstance(layer, LoraLayer)]
    return nn.ModuleList(m for layer in layers for m in (layer.lora_A, layer.lora_B))


def none(cfg: AdapterConfig, llm: PreTrainedModel) -> nn.ModuleList:
    """No adapters."""
    return nn.ModuleList()

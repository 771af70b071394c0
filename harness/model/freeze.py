"""Which components train in a stage, per-component parameter counts, and the paper-scale parameter report.

Components (declared in `harness.config.schema.Component`): vision, connector, fusion (cross-attention blocks), llm
(without its adapters), adapters (bottleneck or LoRA), frames (video frame embedding). A stage trains the ones its
`trainable` list names (by default all but the vision encoder and the LLM) and freezes the others.
"""

from __future__ import annotations

from typing import get_args

from torch import nn

from harness.config.schema import Component, ModelConfig, StageConfig
from harness.model.mllm import MultimodalLM, build_meta_model

COMPONENTS: tuple[str, ...] = get_args(Component)


def component_parameters(model: MultimodalLM) -> dict[str, list[nn.Parameter]]:
    """Disjoint parameter lists per component (tied weights once)."""
    adapters = list({id(p): p for m in model.adapter_modules for p in m.parameters()}.values())
    inside = {id(p) for p in adapters}
    return {
        "vision": list(model.vision.parameters()),
        "connector": list(model.connector.parameters()),
        "fusion": list(model.fusion.parameters()),
        "llm": [p for p in model.llm.parameters() if id(p) not in inside],
        "adapters": adapters,
        "frames": list(model.frames.parameters()),
    }


def stage_flags(stage: StageConfig) -> dict[str, bool]:
    """Whether each component trains in `stage`."""
    return {name: name in stage.trainable for name in COMPONENTS}


def apply_freeze_policy(model: MultimodalLM, model_cfg: ModelConfig, stage: StageConfig) -> list[dict]:
    """Set requires_grad per component for `stage`; rows {component, trainable, params, trainable_params}."""
    flags = stage_flags(stage)
    rows = []
    for name, params in component_parameters(model).items():
        for p in params:
            p.requires_grad_(flags[name])
        n = sum(p.numel() for p in params)
        rows.append({"component": name, "trainable": flags[name], "params": n, "trainable_params": n * flags[name]})
    return rows


def format_freeze_table(rows: list[dict]) -> list[str]:
    """One line per component, e.g. `vision     frozen       0.10M params`, then a total line."""
    lines = [f"{r['component']:<10} {'trainable' if r['trainable'] else 'frozen':<10} {r['params'] / 1e6:9.2f}M params"
             for r in rows]
    total, trainable = sum(r["params"] for r in rows), sum(r["trainable_params"] for r in rows)
    lines.append(f"{'total':<10} {'':<10} {total / 1e6:9.2f}M params, {trainable / 1e6:.2f}M trainable")
    return lines


def parameter_report(cfg: ModelConfig, vocab_size: int, stage: StageConfig | None = None) -> list[dict]:
    """Per-component params / trainable params of `cfg` built on the meta device (seconds, no memory).

    `stage` (default: a finetune stage with LLM and vision frozen) decides what trains. Unresolved or missing
    sources are built from the config's sizes; a local folder's config.json decides when it exists.
    """
    return apply_freeze_policy(build_meta_model(cfg, vocab_size), cfg, stage or StageConfig())

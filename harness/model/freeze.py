"""Which components train: requires_grad per component from the config, and a table of parameter counts."""

from __future__ import annotations

from harness.config.schema import ModelConfig
from harness.model.mllm import MultimodalLM


def apply_freeze_policy(model: MultimodalLM, cfg: ModelConfig) -> list[dict]:
    """Set requires_grad per component; return rows {component, trainable, params, trainable_params}."""
    flags = {
        "vision": cfg.vision.trainable,
        "connector": cfg.connector.trainable,
        "llm": cfg.llm.trainable,
        "adapters": cfg.adapter.trainable,
    }
    rows = []
    # Adapters sit inside the LLM's layers, but components() keeps the groups disjoint: order is irrelevant.
    for name, modules in model.components().items():
        params = list({id(p): p for m in modules for p in m.parameters()}.values())  # tied weights count once
        for p in params:
            p.requires_grad_(flags[name])
        n = sum(p.numel() for p in params)
        rows.append(
            {"component": name, "trainable": flags[name], "params": n, "trainable_params": n * flags[name]}
        )
    return rows


def format_freeze_table(rows: list[dict]) -> list[str]:
    """One line per component, e.g. `vision     frozen       0.10M params`, then a total line."""
    lines = []
    for r in rows:
        state = "trainable" if r["trainable"] else "frozen"
        lines.append(f"{r['component']:<10} {state:<10} {r['params'] / 1e6:6.2f}M params")
    total = sum(r["params"] for r in rows)
    trainable = sum(r["trainable_params"] for r in rows)
    lines.append(f"{'total':<10} {'':<10} {total / 1e6:6.2f}M params, {trainable / 1e6:.2f}M trainable")
    return lines

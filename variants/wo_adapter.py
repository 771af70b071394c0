"""w/o adapter: frozen LLM with no adapters, so only the connector learns.

Tests how much the adapters contribute to adapting a frozen LLM to visual prefix tokens (the paper's finding 1:
prefix tokens with trainable adapters adapt a frozen LLM well).
"""

from harness.variant import Variant

WO_ADAPTER = Variant(
    name="wo_adapter",
    baseline="lynx",
    axis="network.adapter",
    description="frozen LLM, no adapters: only the connector learns",
    delta={"model.adapter.kind": "none"},
)

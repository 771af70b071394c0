"""w/o adapter: a frozen LLM with no adapters, so only the resampler (and frame embedding) learns.

Tests how much the adapters contribute to adapting a frozen LLM to visual prefix tokens (finding 1).
"""

from harness.variant import Variant

WO_ADAPTER = Variant(
    name="wo_adapter",
    baseline="lynx",
    axis="network.adapter",
    description="frozen LLM, no adapters: only the connector learns",
    delta={"model.adapter.kind": "none"},
)

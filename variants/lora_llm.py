"""LoRA: low-rank updates on the LLM's attention projections (through peft) instead of bottleneck adapters.

Compares two parameter-efficient ways of adapting the frozen LLM.
"""

from harness.variant import Variant

LORA_LLM = Variant(
    name="lora_llm",
    baseline="lynx",
    axis="network.adapter",
    description="LoRA on the LLM's attention instead of bottleneck adapters",
    delta={"model.adapter.kind": "lora"},
)

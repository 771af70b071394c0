"""Full LLM finetuning: no adapters; the LLM is trained in the instruction-finetuning stage, as LLaVA does.

Compares parameter-efficient adaptation with full finetuning of the language backbone.
"""

from harness.config.schema import DEFAULT_TRAINABLE
from harness.variant import Variant

FULL_FT_LLM = Variant(
    name="full_ft_llm",
    baseline="lynx",
    axis="network.adapter",
    description="no adapters; the whole LLM trains in finetuning (LLaVA-style)",
    delta={"model.adapter.kind": "none", "train.finetune.trainable": [*DEFAULT_TRAINABLE, "llm"]},
)

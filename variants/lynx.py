"""Lynx: the study's baseline.

Prefix fusion of resampled visual tokens, an instruction-tuned LLM kept frozen with bottleneck adapters in every
block, a frozen vision encoder, diverse prompts. Every other variant is a controlled delta from this one. Paper:
Zeng et al. 2023, "What Matters in Training a GPT4-Style Language Model with Multimodal Inputs?", Table 3 "Lynx".
"""

from harness.variant import Variant

LYNX = Variant(
    name="lynx",
    baseline=None,
    axis="baseline",
    description="Lynx baseline: prefix tokens, resampler, frozen instruct LLM + adapters, frozen ViT",
    paper="Table 3: Lynx",
    delta={},
)

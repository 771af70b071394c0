"""Lynx: the study's baseline.

Prefix fusion of 32 resampled visual tokens, an instruction-tuned LLM kept frozen with bottleneck adapters in
every second block (the released config; about 8.4B parameters in all at paper scale), the large vision encoder
frozen, two stages (pretraining with a high-resolution phase, then instruction finetuning), diverse prompts,
curated data, video. Every other variant is a controlled delta from
this one. Paper: Zeng et al. 2023, Table 3 "Lynx": Open-VQA image 76.16, video 66.22.
"""

from harness.variant import Variant

LYNX = Variant(
    name="lynx",
    baseline=None,
    axis="baseline",
    description="Lynx baseline: prefix tokens, resampler, frozen instruct LLM + adapters, frozen ViT, two stages",
    paper="Table 3: Lynx (Open-VQA image 76.16, video 66.22)",
    paper_scores={"openvqa_image/acc": 76.16, "openvqa_video/acc": 66.22},
    delta={},
)

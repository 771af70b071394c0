"""VQA-heavy: four times the weight of short-answer VQA data in the finetuning mixture.

The paper's finding 4: too much VQA data gives terse answers that ignore instructions. Watch the probes
(answer length, format compliance) as well as accuracy.
"""

from harness.variant import Variant

VQA_HEAVY = Variant(
    name="vqa_heavy",
    baseline="lynx",
    axis="data.mixture",
    description="4x the weight of short-answer VQA in finetuning",
    delta={"data.vqa_weight": 4.0},
)

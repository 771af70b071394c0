"""w/o diverse prompts: train with the few base prompts per task instead of the diversified pool.

The paper's finding 3: diverse prompts are crucial for following unseen instructions. Paper (Table 3):
Open-VQA image 76.16 -> 75.50, video 66.22 -> 59.46. Evaluation always uses held-out phrasings.
"""

from harness.variant import Variant

WO_DIVERSE_PROMPTS = Variant(
    name="wo_diverse_prompts",
    baseline="lynx",
    axis="data.prompts",
    description="only a few fixed prompts per task in training",
    paper="Table 3: w/o diverse prompts (image 75.50, video 59.46)",
    paper_scores={"openvqa_image/acc": 75.5, "openvqa_video/acc": 59.46},
    mechanism="openvqa_image/acc",
    delta={"data.prompts": "fixed"},
)

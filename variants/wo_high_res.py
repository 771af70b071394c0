"""w/o high-resolution: skip the high-resolution pretraining phase and stay at the low resolution throughout.

In the miniature world, sign text (OCR) is legible only at the high resolution. Paper (Table 3): Open-VQA image
76.16 -> 73.51, video 66.22 -> 62.16.
"""

from harness.variant import Variant

WO_HIGH_RES = Variant(
    name="wo_high_res",
    baseline="lynx",
    axis="network.resolution",
    description="no high-resolution phase: low resolution throughout",
    paper="Table 3: w/o high-resolution (image 73.51, video 62.16)",
    paper_scores={"openvqa_image/acc": 73.51, "openvqa_video/acc": 62.16},
    mechanism="openvqa_image/OCR/acc",
    delta={"train.high_res.steps": 0, "train.finetune.resolution": "low"},
)

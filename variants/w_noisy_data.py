"""w/ large-scale noisy data: add a large noisy alt-text corpus (wrong attributes, keyword salad, junk tokens)
to pretraining.

The paper's finding 2: data quality beats quantity; noisy pairs contaminate the output distribution. Paper
(Table 3): Open-VQA image 76.16 -> 72.85, video 66.22 -> 60.14. Watch the junk-token probe.
"""

from harness.variant import Variant

W_NOISY_DATA = Variant(
    name="w_noisy_data",
    baseline="lynx",
    axis="data.quality",
    description="add a large noisy alt-text corpus to pretraining",
    paper="Table 3: w/ large-scale noisy data (image 72.85, video 60.14)",
    paper_scores={"openvqa_image/acc": 72.85, "openvqa_video/acc": 60.14},
    mechanism="probes/caption_junk_rate",
    delta={"data.noisy_pretraining": True},
)

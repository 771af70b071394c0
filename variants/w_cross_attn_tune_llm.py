"""w/ cross-attn & trainable LLM: as w_cross_attn, with the LLM itself trained during instruction finetuning.

Text instruction data is used in finetuning (as in the baseline). Paper (Table 3): Open-VQA image 61.26,
video 52.70: training the LLM recovers much of the gap but stays below prefix + adapters.
"""

from harness.config.schema import DEFAULT_TRAINABLE
from harness.variant import Variant

W_CROSS_ATTN_TUNE_LLM = Variant(
    name="w_cross_attn_tune_llm",
    baseline="w_cross_attn",
    axis="network.fusion",
    description="cross-attention with the LLM trained in finetuning",
    paper="Table 3: w/ cross-attn & trainable LLM (image 61.26, video 52.70)",
    paper_scores={"openvqa_image/acc": 61.26, "openvqa_video/acc": 52.7},
    mechanism="openvqa_image/acc",
    delta={"train.finetune.trainable": [*DEFAULT_TRAINABLE, "llm"]},
)

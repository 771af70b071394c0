"""w/ cross-attn: gated cross-attention layers (tanh gates starting at 0) instead of prefix tokens, LLM frozen.

The paper's finding 1: prefix tokens with adapters adapt a frozen LLM far better than cross-attention.
Paper (Table 3): Open-VQA image 31.79, video 51.35. The cross-attention blocks replace the adapters as the
trainable part inside the LLM.
"""

from harness.variant import Variant

W_CROSS_ATTN = Variant(
    name="w_cross_attn",
    baseline="lynx",
    axis="network.fusion",
    description="Flamingo-style gated cross-attention instead of prefix tokens; LLM frozen",
    paper="Table 3: w/ cross-attn (image 31.79, video 51.35)",
    paper_scores={"openvqa_image/acc": 31.79, "openvqa_video/acc": 51.35},
    mechanism="openvqa_image/acc",
    delta={"model.fusion.kind": "cross_attn", "model.adapter.kind": "none"},
)

"""w/ LLaMA: the base (not instruction-tuned) LLM instead of the instruction-tuned one.

Tests whether instruction tuning of the language backbone matters. Paper (Table 3): Open-VQA image 76.16 ->
70.86, video 66.22 -> 60.81, and longer answers under "give a short answer" (15.81 -> 20.15 words).
"""

from harness.variant import Variant

W_LLAMA = Variant(
    name="w_llama",
    baseline="lynx",
    axis="network.llm",
    description="base LLM instead of the instruction-tuned one",
    paper="Table 3: w/ LLaMA (image 70.86, video 60.81)",
    paper_scores={"openvqa_image/acc": 70.86, "openvqa_video/acc": 60.81},
    mechanism="probes/instruction_compliance",
    delta={"model.llm.role": "base"},
)

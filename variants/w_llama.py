"""w/ LLaMA: the base (not instruction-tuned) LLM instead of the instruction-tuned one.

Tests whether instruction tuning of the language backbone matters. The paper finds it does (Open-VQA image
76.16 -> 70.86, and longer answers under "give a short answer": 15.81 -> 20.15 words). At scales whose LLM is
random-init (`tiny` until the backbone zoo lands) the two roles build the same network, so this variant only
differs in its label there.
"""

from harness.variant import Variant

W_LLAMA = Variant(
    name="w_llama",
    baseline="lynx",
    axis="network.llm",
    description="base LLM instead of the instruction-tuned one",
    paper="Table 3: w/ LLaMA",
    delta={"model.llm.role": "base"},
)

"""The registered variants: one module per controlled design choice (see harness/variant.py for the format).

Every variant is a delta from `lynx` (or from another variant, e.g. `w_cross_attn_tune_llm` from `w_cross_attn`).
A delta names config keys only, never a scale: the same file runs at `tiny` on a laptop and at `paper` on GPUs.
"""

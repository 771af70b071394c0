"""8 visual tokens: the resampler compresses each image (or video) to 8 tokens instead of Lynx's 32.

Tests how many visual tokens the LLM needs (fewer tokens are cheaper but may lose detail such as OCR and counts).
"""

from harness.variant import Variant

RESAMPLER_8_TOKENS = Variant(
    name="resampler_8_tokens",
    baseline="lynx",
    axis="network.visual_tokens",
    description="8 visual tokens from the resampler instead of 32",
    delta={"model.connector.num_queries": 8},
)

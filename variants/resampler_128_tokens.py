"""128 visual tokens: the resampler produces 128 tokens instead of Lynx's 32 (more detail, longer sequences)."""

from harness.variant import Variant

RESAMPLER_128_TOKENS = Variant(
    name="resampler_128_tokens",
    baseline="lynx",
    axis="network.visual_tokens",
    description="128 visual tokens from the resampler instead of 32",
    delta={"model.connector.num_queries": 128},
)

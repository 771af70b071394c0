"""Linear projector: one linear layer over all patch tokens instead of the Perceiver resampler.

Tests the connector type (LLaVA-style projection vs a fixed number of learned queries); the LLM then sees every
patch token of every frame.
"""

from harness.variant import Variant

LINEAR_PROJECTOR = Variant(
    name="linear_projector",
    baseline="lynx",
    axis="network.connector",
    description="a linear connector over all patch tokens instead of the resampler",
    delta={"model.connector.kind": "linear"},
)

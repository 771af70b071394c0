"""MLP projector: a two-layer GELU MLP over all patch tokens (LLaVA-1.5), instead of the resampler."""

from harness.variant import Variant

MLP_PROJECTOR = Variant(
    name="mlp_projector",
    baseline="lynx",
    axis="network.connector",
    description="a two-layer GELU MLP connector (LLaVA-1.5 style)",
    delta={"model.connector.kind": "mlp"},
)

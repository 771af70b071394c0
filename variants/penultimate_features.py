"""Penultimate features: take the encoder's second-to-last block output (as LLaVA does with CLIP) instead of
the last one.
"""

from harness.variant import Variant

PENULTIMATE_FEATURES = Variant(
    name="penultimate_features",
    baseline="lynx",
    axis="network.vision",
    description="vision features from the second-to-last block",
    delta={"model.vision.feature_layer": "penultimate"},
)

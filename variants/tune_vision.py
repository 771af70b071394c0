"""Trainable vision encoder: the ViT is unfrozen in every stage instead of kept frozen."""

from harness.config.schema import DEFAULT_TRAINABLE
from harness.variant import Variant

WITH_VISION = [*DEFAULT_TRAINABLE, "vision"]

TUNE_VISION = Variant(
    name="tune_vision",
    baseline="lynx",
    axis="network.vision",
    description="the vision encoder trains in every stage",
    delta={
        "train.pretrain.trainable": WITH_VISION,
        "train.high_res.trainable": WITH_VISION,
        "train.finetune.trainable": WITH_VISION,
    },
)

"""Trainable vision encoder: the ViT is unfrozen in every stage instead of kept frozen."""

from harness.variant import Variant

TUNE_VISION = Variant(
    name="tune_vision",
    baseline="lynx",
    axis="network.vision",
    description="the vision encoder trains in every stage",
    delta={
        "train.pretrain.train_vision": True,
        "train.high_res.train_vision": True,
        "train.finetune.train_vision": True,
    },
)

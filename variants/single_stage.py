"""Single stage: skip the pretraining stage (and its high-resolution phase); instruction finetuning only."""

from harness.variant import Variant

SINGLE_STAGE = Variant(
    name="single_stage",
    baseline="lynx",
    axis="training.stages",
    description="skip pretraining: instruction finetuning only",
    delta={"train.pretrain.steps": 0, "train.high_res.steps": 0},
)

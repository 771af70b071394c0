"""Small vision encoder: the smaller contrastively pretrained ViT instead of the large one.

Vision encoder size is one of the axes later work (Prismatic, MM1, Cambrian-1) found to matter.
"""

from harness.variant import Variant

SMALL_VISION = Variant(
    name="small_vision",
    baseline="lynx",
    axis="network.vision",
    description="the small vision encoder instead of the large one",
    delta={"model.vision.size": "small"},
)

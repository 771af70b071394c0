"""Natural sampling: sample datasets in proportion to their size instead of the hand-set weights.

The paper notes that its hand-set weights matter a lot; this measures how much.
"""

from harness.variant import Variant

NATURAL_SAMPLING = Variant(
    name="natural_sampling",
    baseline="lynx",
    axis="data.sampling",
    description="dataset-size-proportional sampling instead of hand-set weights",
    delta={"data.sampling": "natural"},
)

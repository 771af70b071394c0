"""Adapters in every block: the paper's description, twice the adapter parameters of the released config.

The Lynx paper describes a bottleneck adapter after every decoder block; its released config (and its "about
8.4B parameters in all") uses every second block, which is what the `lynx` baseline here does. This variant
measures what the extra adapters buy.
"""

from harness.variant import Variant

ADAPTER_EVERY_BLOCK = Variant(
    name="adapter_every_block",
    baseline="lynx",
    axis="network.adapter",
    description="adapters after every LLM block (the paper's text) instead of every second one",
    delta={"model.adapter.every": 1},
)

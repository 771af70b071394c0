"""ablate: an ablation-study harness for multimodal LLMs (the Lynx design space, controlled and tracked)."""

__version__ = "0.1.0"

"""The model: vision encoder, connector, LLM with adapters, and which of them train."""

from harness.model.adapters import ADAPTERS
from harness.model.connectors import CONNECTORS
from harness.model.freeze import apply_freeze_policy, format_freeze_table
from harness.model.mllm import MultimodalLM, build_model

__all__ = [
    "ADAPTERS",
    "CONNECTORS",
    "MultimodalLM",
    "apply_freeze_policy",
    "build_model",
    "format_freeze_table",
]

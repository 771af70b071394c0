"""The model: vision encoder, connector, fusion, LLM with adapters, and which of them train per stage."""

from harness.components import ADAPTERS, CONNECTORS, FUSIONS
from harness.model.freeze import apply_freeze_policy, format_freeze_table, parameter_report
from harness.model.mllm import MultimodalLM, build_meta_model, build_model

__all__ = [
    "ADAPTERS",
    "CONNECTORS",
    "FUSIONS",
    "MultimodalLM",
    "apply_freeze_policy",
    "build_meta_model",
    "build_model",
    "format_freeze_table",
    "parameter_report",
]

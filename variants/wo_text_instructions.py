"""w/o text instructions: drop the text-only instructions (about 30% of Lynx's finetuning mix).

Tests text co-training: does the model keep following instructions and answering text-only questions?
"""

from harness.variant import Variant

WO_TEXT_INSTRUCTIONS = Variant(
    name="wo_text_instructions",
    baseline="lynx",
    axis="data.text",
    description="no text-only instruction data in finetuning",
    delta={"data.text_instructions": False},
)

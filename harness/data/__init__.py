"""The data side of the harness: the generated world, its tokenizer, the chat format and the datamodule."""

from harness.data.chat import IGNORE_INDEX, answer_text, encode_example, encode_prompt, prompt_text
from harness.data.datamodule import WorldDataModule, image_to_tensor
from harness.data.tokenizer import build_tokenizer
from harness.data.world import GENERATOR_VERSION, PHRASINGS, TASKS, World, build_world, question

__all__ = [
    "GENERATOR_VERSION",
    "IGNORE_INDEX",
    "PHRASINGS",
    "TASKS",
    "World",
    "WorldDataModule",
    "answer_text",
    "build_tokenizer",
    "build_world",
    "encode_example",
    "encode_prompt",
    "image_to_tensor",
    "prompt_text",
    "question",
]

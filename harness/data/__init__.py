"""The data side of the harness: the generated miniature world (scenes, videos, text, benchmark) as webdataset
shards, its tokenizer, the chat format, dataset mixtures and the datamodule that turns shards into batches."""

from harness.data.benchmark import OPENVQA_IMAGE, OPENVQA_VIDEO
from harness.data.chat import (
    IGNORE_INDEX,
    answer_text,
    encode_dialogue,
    encode_example,
    encode_prompt,
    encode_text,
    prompt_text,
)
from harness.data.mixture import HAND_WEIGHTS, MIXTURES, mixture, stage_datasets
from harness.data.prompts import BASE, HELD_OUT, POOL, choose_prompt, held_out_prompt
from harness.data.vocab import FORMAT_INSTRUCTIONS, NOISE_TOKENS

# Imported on first use: the datamodule pulls in Lightning and torch, the world and shards webdataset and PIL,
# the tokenizer transformers; the vocabulary and scoring code must stay importable without them.
_WHERE = {
    "WorldDataModule": "datamodule", "frame_indices": "datamodule", "image_to_tensor": "datamodule",
    "ShardWriter": "shards", "decode_sample": "shards", "expand_shards": "shards", "iter_samples": "shards",
    "build_tokenizer": "tokenizer", "train_tokenizer": "tokenizer",
    "GENERATOR_VERSION": "world", "World": "world", "build_world": "world", "world_hash": "world",
}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"harness.data.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'harness.data' has no attribute '{name}'")


__all__ = [
    "BASE",
    "FORMAT_INSTRUCTIONS",
    "GENERATOR_VERSION",
    "HAND_WEIGHTS",
    "HELD_OUT",
    "IGNORE_INDEX",
    "NOISE_TOKENS",
    "OPENVQA_IMAGE",
    "OPENVQA_VIDEO",
    "POOL",
    "MIXTURES",
    "ShardWriter",
    "World",
    "WorldDataModule",
    "answer_text",
    "build_tokenizer",
    "build_world",
    "choose_prompt",
    "decode_sample",
    "encode_dialogue",
    "encode_example",
    "encode_prompt",
    "encode_text",
    "expand_shards",
    "frame_indices",
    "held_out_prompt",
    "image_to_tensor",
    "iter_samples",
    "mixture",
    "prompt_text",
    "stage_datasets",
    "train_tokenizer",
    "world_hash",
]

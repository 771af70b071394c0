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
from harness.data.datamodule import WorldDataModule, frame_indices, image_to_tensor
from harness.data.mixture import HAND_WEIGHTS, STAGES, mixture, stage_datasets
from harness.data.prompts import BASE, HELD_OUT, POOL, choose_prompt, held_out_prompt
from harness.data.shards import ShardWriter, decode_sample, expand_shards, iter_samples
from harness.data.tokenizer import build_tokenizer, train_tokenizer
from harness.data.vocab import FORMAT_INSTRUCTIONS, NOISE_TOKENS
from harness.data.world import GENERATOR_VERSION, World, build_world, world_hash

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
    "STAGES",
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

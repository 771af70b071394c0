"""What a zoo is built from: the per-scale `ZooSpec`, default budgets per scale, and content hashes.

An entry's hash covers exactly what determines its weights and its recorded quality (the architecture fields of
its config, the training budget, the seed, the tokenizer's vocabulary and the training and held-out inputs), so a
second build with the same spec and inputs finds every entry up to date and does nothing, while any change
rebuilds just the entries it affects (llm-instruct's hash includes llm-base's).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from harness.config.schema import LLMConfig, VisionConfig

# Bump when training code or saved formats change in a way that should rebuild existing zoos.
ZOO_VERSION = 2  # 2: ViTs at both resolutions, with location-aware auxiliary heads

LLM_ARCH_FIELDS = ("arch", "hidden_size", "intermediate_size", "num_layers", "num_heads", "max_positions")
VISION_ARCH_FIELDS = ("model", "image_size", "patch_size", "width", "depth", "heads")

@dataclass
class ZooSpec:
    """Architectures and training budgets of one scale's zoo (the lead fills it from the scale preset)."""

    llm: LLMConfig  # architecture of both LMs
    vision_large: VisionConfig  # architecture of vit-large
    vision_small: VisionConfig  # architecture of vit-small
    lm_steps: int = 500  # next-token pretraining steps of llm-base
    instruct_steps: int = 250  # dialogue tuning steps of llm-instruct (on top of llm-base)
    clip_steps: int = 400  # contrastive steps of each ViT
    batch_size: int = 32  # LM batch (sequences)
    lr: float = 2e-3  # LM peak learning rate (instruct tuning uses half)
    seq_len: int = 64  # LM tokens per packed pretraining block
    dialogue_len: int = 96  # tokens a dialogue is cut to (as the harness's data.max_text_len: whole answers fit)
    clip_batch_size: int = 128  # image-caption pairs per contrastive step (more negatives help)
    clip_lr: float = 1e-3
    clip_high_res_every: int = 2  # every k-th contrastive step at the scale's high resolution (0: low only)
    clip_aux_weight: float = 1.0  # weight of the location-aware heads' loss (0: contrastive only)
    embed_dim: int = 64  # shared image-text embedding width of the CLIP heads (not saved)
    precision: Literal["bf16", "fp32"] = "bf16"  # training autocast (evaluation always runs in fp32)
    # torch threads while building (0 = leave torch's setting). One thread: with two, OpenMP's spin-waiting
    # made steps 5-20x slower whenever other processes shared this 2-core machine; alone it is ~1.5x faster.
    threads: int = 1

    def params(self) -> dict[str, Any]:
        """The spec as flat `key: value` pairs (MLflow params)."""
        flat: dict[str, Any] = {}
        for key, value in dataclasses.asdict(self).items():
            if isinstance(value, dict):
                flat.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                flat[key] = value
        return flat


def llm_arch(cfg: LLMConfig) -> dict[str, Any]:
    """The fields of an LLMConfig that shape the network (not its role or source)."""
    return {k: getattr(cfg, k) for k in LLM_ARCH_FIELDS}


def vision_arch(cfg: VisionConfig) -> dict[str, Any]:
    """The fields of a VisionConfig that shape the network (not its weights, role or high-resolution size)."""
    return {k: getattr(cfg, k) for k in VISION_ARCH_FIELDS}


class Hasher:
    """A sha256 over a stream of tagged values; unambiguous because every value is length-prefixed."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def add(self, data: bytes | str) -> Hasher:
        raw = data.encode() if isinstance(data, str) else data
        self._h.update(len(raw).to_bytes(8, "little") + raw)
        return self

    def add_json(self, value: Any) -> Hasher:
        return self.add(json.dumps(value, sort_keys=True, default=str))

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def digest_texts(texts: Iterable[str]) -> str:
    h = Hasher()
    for text in texts:
        h.add(text)
    return h.hexdigest()


def digest_dialogues(dialogues: Iterable[Sequence[tuple[str, str]]]) -> str:
    h = Hasher()
    for turns in dialogues:
        h.add_json([list(turn) for turn in turns])
    return h.hexdigest()


def digest_pairs(pairs: Iterable[tuple]) -> str:
    """(image, caption) pairs, or (image, caption, dense targets) triples."""
    h = Hasher()
    for image, caption, *targets in pairs:
        h.add_json([image.mode, list(image.size)]).add(image.tobytes()).add(caption)
        if targets:
            h.add_json(targets[0])
    return h.hexdigest()


def digest_tokenizer(tokenizer: Any) -> str:
    """The vocabulary and special tokens: what token ids mean."""
    specials = {k: str(v) for k, v in tokenizer.special_tokens_map.items()}
    return Hasher().add_json(sorted(tokenizer.get_vocab().items())).add_json(specials).hexdigest()


def entry_hashes(spec: ZooSpec, seed: int, digests: dict[str, str]) -> dict[str, str]:
    """The content hash of each entry, from the spec and the input digests (`digest_*` of every input)."""
    common = {"zoo_version": ZOO_VERSION, "seed": seed, "tokenizer": digests["tokenizer"], "precision": spec.precision}
    base = Hasher().add_json({
        **common, "llm": llm_arch(spec.llm), "steps": spec.lm_steps, "batch_size": spec.batch_size,
        "lr": spec.lr, "seq_len": spec.seq_len, "dialogue_len": spec.dialogue_len, "texts": digests["texts"],
        "heldout_texts": digests["heldout_texts"], "heldout_dialogues": digests["heldout_dialogues"],
    }).hexdigest()
    instruct = Hasher().add_json({
        **common, "base": base, "steps": spec.instruct_steps, "dialogues": digests["dialogues"],
        "heldout_dialogues": digests["heldout_dialogues"], "heldout_texts": digests["heldout_texts"],
    }).hexdigest()
    hashes = {"llm-base": base, "llm-instruct": instruct}
    for name, vision in (("vit-large", spec.vision_large), ("vit-small", spec.vision_small)):
        hashes[name] = Hasher().add_json({
            **common, "vision": vision_arch(vision), "steps": spec.clip_steps, "batch_size": spec.clip_batch_size,
            "lr": spec.clip_lr, "embed_dim": spec.embed_dim, "pairs": digests["pairs"],
            "high_res_every": spec.clip_high_res_every, "high_res_size": vision.high_res_size,
            "aux_weight": spec.clip_aux_weight,
            "heldout_pairs": digests["heldout_pairs"],
        }).hexdigest()
    return hashes

"""Which datasets each stage trains on and with what sampling weight.

Strategies (`data.sampling`): "hand" = the hand-set weights of `HAND_WEIGHTS` (as in the paper, which fixes its
weights by hand and says they matter), "natural" = proportional to dataset size, "balanced" = equal. The data
flags then act on top: `noisy_pretraining` adds the noisy corpus to pretraining, `text_instructions` false drops
text-only instructions from finetuning, `video` false drops the video datasets, `vqa_weight` multiplies the VQA
weight in finetuning, and `shards` (real LAION/CC3M-style shards) joins pretraining as the dataset `shards`.
"""

from __future__ import annotations

import tarfile
from typing import get_args

from harness.config.schema import STAGES, DataConfig, Mixture
from harness.errors import AblateError, one_of

VIDEO_DATASETS = ("video_qa", "video_caption")
SHARDS = "shards"  # the name of the real-shard dataset in a mixture

# Hand-set weights. Pretraining: mostly clean captions, a little labelled data (as Lynx mixes captioning, VQA and
# classification into stage 1), some plain text to keep the LM's language. The noisy corpus gets a large weight
# because the paper's noisy data (COYO-700M, DataComp-1B) dwarfs its 120M curated pairs. Finetuning: VQA is 40%
# of the mix (a short fine-tuning budget learns question answering from the samples that ask questions: a
# VQA-only run reached 38% where the old 23% share reached 25% at the same steps) and text-only instructions
# about a quarter (Lynx: about 30%).
HAND_WEIGHTS = {
    "pretrain": {"captions": 1.0, "vqa": 0.2, "place": 0.1, "text": 0.2, "video_caption": 0.2, "noisy": 4.0,
                 SHARDS: 1.0},
    "finetune": {"vqa": 2.0, "caption": 0.3, "place": 0.2, "dialogue": 0.5, "text_instructions": 1.3,
                 "video_qa": 0.6, "video_caption": 0.1},
}
OPTIONAL = {"noisy", SHARDS}  # only present when their flag asks for them
MIXTURES = get_args(Mixture)
assert set(MIXTURES) == set(HAND_WEIGHTS), "every mixture a stage can name has hand-set weights"


def default_mixture(stage: str) -> str:
    """The mixture of one of the paper's stages (`train.<stage>.mixture`'s default): the high-resolution phase
    continues pretraining's. An added stage has none by default: its config names it."""
    if stage not in STAGES:
        raise AblateError(f"stage '{stage}' is not one of the paper's ({one_of(STAGES)}): say which data mixture it "
                          f"draws (train.{stage}.mixture, one of {one_of(MIXTURES)})")
    return "finetune" if stage == "finetune" else "pretrain"


def stage_datasets(stage: str, data_cfg: DataConfig, mix: str | None = None) -> list[str]:
    """The dataset names a stage trains on under the data flags: those of its mixture `mix` (default: the paper
    stage's, `default_mixture`)."""
    key = mix or default_mixture(stage)
    if key not in MIXTURES:
        raise AblateError(f"stage '{stage}': unknown data mixture '{key}'; expected one of {one_of(MIXTURES)}")
    names = [n for n in HAND_WEIGHTS[key] if n not in OPTIONAL]
    if key == "pretrain" and data_cfg.noisy_pretraining:
        names.append("noisy")
    if key == "pretrain" and data_cfg.shards:
        names.append(SHARDS)
    if not data_cfg.text_instructions:
        names = [n for n in names if n != "text_instructions"]
    if not data_cfg.video:
        names = [n for n in names if n not in VIDEO_DATASETS]
    return names


def count_samples(shards: list[str]) -> int:
    """Samples (distinct keys) in tar shards, read from the headers only."""
    total = 0
    for shard in shards:
        try:
            with tarfile.open(shard) as tar:
                total += len({m.name.rsplit("/", 1)[-1].split(".", 1)[0] for m in tar.getmembers() if m.isfile()})
        except (OSError, tarfile.TarError) as exn:
            raise AblateError(f"cannot read webdataset shard {shard}: {exn}") from exn
    return total


def mixture(stage: str, data_cfg: DataConfig, world, shard_count: int | None = None,
            mix: str | None = None) -> dict[str, float]:
    """Normalised sampling weight per dataset name for a stage (sorted by name), drawn from its mixture `mix`
    (default: the paper stage's).

    `shard_count` is the size of the real-shard dataset for "natural" sampling (counted when not given).
    """
    key = mix or default_mixture(stage)
    names = stage_datasets(stage, data_cfg, key)
    if data_cfg.sampling == "hand":
        weights = {n: HAND_WEIGHTS[key][n] for n in names}
    elif data_cfg.sampling == "natural":
        if SHARDS in names and shard_count is None:
            from harness.data.shards import expand_shards

            shard_count = count_samples(expand_shards(data_cfg.shards))
        weights = {n: float(shard_count if n == SHARDS else world.size(n)) for n in names}
    elif data_cfg.sampling == "balanced":
        weights = dict.fromkeys(names, 1.0)
    else:
        raise AblateError(f"unknown data.sampling '{data_cfg.sampling}'; expected one of 'balanced', 'hand', 'natural'")
    if key == "finetune" and "vqa" in weights:
        weights["vqa"] *= data_cfg.vqa_weight
    total = sum(weights.values())
    if total <= 0:
        raise AblateError(f"the {stage} mixture has no weight: {weights}")
    return {n: weights[n] / total for n in sorted(weights)}

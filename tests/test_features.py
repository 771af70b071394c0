"""The frozen-feature cache on a real small world and a real tiny model: exact, shared, keyed, and skipped where the
encoder trains."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from harness.config.schema import DataConfig, ModelConfig, StageConfig
from harness.data import WorldDataModule
from harness.data.shards import image_members, shard_reader
from harness.features import FeatureCache, cache_identity, image_digest, stage_features
from harness.model import apply_freeze_policy, build_model
from harness.model.mllm import model_inputs

DATASETS = ["captions", "vqa", "video_qa", "text_instructions"]


def make_model(tokenizer, seed: int = 0, **vision):
    torch.manual_seed(seed)
    cfg = ModelConfig()
    cfg = dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision, **vision))
    return cfg, build_model(cfg, len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                            tokenizer.eos_token_id)


def losses(model, cfg, dm, steps: int = 4) -> list[float]:
    """Training losses of a few AdamW steps on the finetune stream (vision frozen)."""
    apply_freeze_policy(model, cfg, StageConfig())
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    out = []
    for step, batch in enumerate(dm.stage_dataloader("finetune", 32)):
        if step == steps:
            break
        loss = model(**model_inputs(batch), labels=batch["labels"]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(loss.item())
    return out


def test_cached_and_uncached_training_give_the_same_losses(world, tokenizer, tmp_path):
    cfg, plain_model = make_model(tokenizer)
    _, cached_model = make_model(tokenizer)
    plain = WorldDataModule(world, DataConfig(), tokenizer, 32, 8, seed=0)
    cached = WorldDataModule(world, DataConfig(), tokenizer, 32, 8, seed=0)
    decision = stage_features(tmp_path, cached_model, cached, "finetune", list(cached.mixture("finetune")), 32,
                              "32-true", True, False, False)
    assert decision.startswith("cached at 32px")
    batch = next(iter(cached.stage_dataloader("finetune", 32)))
    assert "features" in batch and "images" not in batch  # no image is decoded or encoded
    assert losses(cached_model, cfg, cached) == pytest.approx(losses(plain_model, cfg, plain), rel=1e-5)


def test_a_second_warm_encodes_nothing_and_shares_rows_across_datasets(world, tokenizer, tmp_path):
    _, model = make_model(tokenizer)
    cache = FeatureCache.for_encoder(tmp_path, model.vision, 32)
    from harness.data.datamodule import bytes_to_tensor

    shards = {name: world.shards(name) for name in DATASETS}
    first = cache.warm(model.vision, shards, 32, bytes_to_tensor)
    images = [image_digest(b) for name in DATASETS for s in shard_reader(world.shards(name)) for b in image_members(s)]
    # captions and vqa show the same 48 scenes, and still video frames repeat: each distinct image is encoded once
    assert len(images) == 48 + 48 + 16 * 5 and first == len(cache) == len(set(images)) <= 48 + 16 * 5
    again = FeatureCache.for_encoder(tmp_path, model.vision, 32)  # another process would see the same folder
    assert again.warm(model.vision, shards, 32, bytes_to_tensor) == 0
    assert again.token_shape() == (1 + (32 // 8) ** 2, 64)


def test_every_part_of_the_key_changes_the_cache(tokenizer):
    _, model = make_model(tokenizer)
    base = cache_identity(model.vision, 32, None)
    assert cache_identity(model.vision, 32, None) == base
    assert cache_identity(model.vision, 64, None) != base  # resolution
    assert cache_identity(model.vision, 32, "bf16") != base  # autocast (dtype)
    _, other_weights = make_model(tokenizer, seed=1)
    assert cache_identity(other_weights.vision, 32, None) != base  # encoder weights
    _, penultimate = make_model(tokenizer, feature_layer="penultimate")
    penultimate.vision.load_state_dict(model.vision.state_dict())
    assert cache_identity(penultimate.vision, 32, None) != base  # feature layer


def test_the_cache_is_skipped_and_the_skip_said_where_the_encoder_trains(world, tokenizer, tmp_path):
    _, model = make_model(tokenizer)
    dm = WorldDataModule(world, DataConfig(), tokenizer, 32, 8, seed=0)
    now = stage_features(tmp_path, model, dm, "finetune", ["vqa"], 32, "32-true", True, True, False)
    later = stage_features(tmp_path, model, dm, "eval", ["openvqa_image"], 32, "32-true", True, False, True)
    off = stage_features(tmp_path, model, dm, "finetune", ["vqa"], 32, "32-true", False, False, False)
    assert "trains in this stage" in now and "trained by an earlier stage" in later and off.startswith("off")
    assert not dm.features and "images" in next(iter(dm.stage_dataloader("finetune", 32)))


def test_blind_evaluation_never_reads_the_cache(world, tokenizer, tmp_path):
    _, model = make_model(tokenizer)
    dm = WorldDataModule(world, DataConfig(), tokenizer, 32, 8, seed=0)
    stage_features(tmp_path, model, dm, "eval", ["openvqa_image"], 32, "32-true", True, False, False)
    seen = next(dm.eval_batches("openvqa_image", 4))
    blind = next(dm.eval_batches("openvqa_image", 4, blind=True))
    assert "features" in seen and "images" in blind and not blind["images"].any()

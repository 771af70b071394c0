"""The one optimizer builder (harness/optim.py): which tensors weight decay spares, on a real tiny model."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from harness.config.schema import ModelConfig, StageConfig
from harness.errors import ConfigError
from harness.model import apply_freeze_policy, build_model
from harness.optim import adamw, param_groups
from harness.resolve import NEUTRAL_WHEN_ADDED, _digest, config_hash, resolve, training_settings


def cross_attention_model():
    cfg = ModelConfig()
    cfg = dataclasses.replace(cfg, fusion=dataclasses.replace(cfg.fusion, kind="cross_attn"),
                              adapter=dataclasses.replace(cfg.adapter, every=1))
    torch.manual_seed(0)
    model = build_model(cfg, 100, 0, 1, 2)
    apply_freeze_policy(model, cfg, StageConfig())  # the frozen LLM and vision encoder leave no group
    return model


def names(model, group) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_gates_scales_norms_and_biases_are_not_decayed_matrices_are():
    model = cross_attention_model()
    decayed, spared = param_groups(model, 0.1)
    assert decayed["weight_decay"] == 0.1 and spared["weight_decay"] == 0.0
    spared_names, decayed_names = names(model, spared), names(model, decayed)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert spared_names | decayed_names == trainable and not spared_names & decayed_names
    assert any(n.endswith("attn_gate") for n in spared_names) and any(n.endswith("ffn_gate") for n in spared_names)
    assert any(n.endswith(".scale") for n in spared_names)  # the adapters' learnable scale
    assert any(n.endswith(".bias") for n in spared_names) and any("norm" in n for n in spared_names)
    assert all(dict(model.named_parameters())[n].ndim >= 2 for n in decayed_names)
    assert not any(n.startswith("llm.") and "adapter" not in n for n in trainable)  # frozen: in neither group


def test_a_spared_tensor_is_left_alone_by_the_step_a_decayed_one_shrinks():
    model = cross_attention_model()
    scale = next(p for n, p in model.named_parameters() if n.endswith(".scale") and p.requires_grad)
    matrix = next(p for n, p in model.named_parameters() if p.requires_grad and p.ndim == 2)
    for rule, scale_moves in (("1d", False), ("none", True)):
        with torch.no_grad():
            scale.fill_(1.0)
            matrix.fill_(1.0)
        opt = adamw(model, lr=0.1, weight_decay=0.5, no_decay=rule)
        for p in model.parameters():  # a zero gradient: only weight decay moves a tensor
            p.grad = torch.zeros_like(p) if p.requires_grad else None
        opt.step()
        assert (scale.item() != 1.0) == scale_moves, rule
        assert torch.allclose(matrix, torch.full_like(matrix, 0.95)), rule  # 1 - lr * wd


def test_no_decay_none_keeps_the_run_key_of_runs_trained_before_the_setting():
    default = resolve("lynx").config
    before = resolve("lynx", cli={"train.no_decay": "none"}).config
    assert default.train.no_decay == "1d" and config_hash(default) != config_hash(before)
    older = {k: v for k, v in NEUTRAL_WHEN_ADDED.items() if k != "train.no_decay"}  # settings added before it
    old_settings = {k: v for k, v in training_settings(before).items()
                    if k != "train.no_decay" and not (k in older and v == older[k])}
    assert config_hash(before) == _digest(old_settings)  # the key the run had before the setting existed
    with pytest.raises(ConfigError, match="train.no_decay must be one of '1d', 'none', got 'all'"):
        resolve("lynx", cli={"train.no_decay": "all"})
    with pytest.raises(ValueError, match="no trainable parameters"):
        adamw(torch.nn.Linear(2, 2).requires_grad_(False), lr=0.1, weight_decay=0.1)

"""Model tests on real tiny components from `ModelConfig()` defaults (random init, nothing downloaded)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import save_file

from harness.config.schema import ConnectorConfig, LLMConfig, ModelConfig, VisionConfig
from harness.errors import AblateError
from harness.model import ADAPTERS, CONNECTORS, MultimodalLM, apply_freeze_policy, build_model
from harness.model.freeze import format_freeze_table
from harness.model.llm import build_llm, decoder_layers
from harness.model.vision import build_vision

VOCAB, PAD, BOS, EOS = 100, 0, 1, 2


def make(cfg: ModelConfig | None = None, seed: int = 0) -> MultimodalLM:
    torch.manual_seed(seed)
    return build_model(cfg or ModelConfig(), VOCAB, PAD, BOS, EOS)


def with_(cfg: ModelConfig, part: str, **changes) -> ModelConfig:
    """A copy of `cfg` with fields of one part (vision, connector, llm, adapter) replaced."""
    return dataclasses.replace(cfg, **{part: dataclasses.replace(getattr(cfg, part), **changes)})


def numel(modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def images(b: int = 2) -> torch.Tensor:
    return torch.randn(b, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_vision_returns_all_tokens_including_cls():
    enc = build_vision(VisionConfig())
    assert enc(images()).shape == (2, (32 // 8) ** 2 + 1, 64)
    assert enc.out_dim == 64


def test_penultimate_features_differ_from_last():
    torch.manual_seed(0)
    last = build_vision(VisionConfig())
    pen = build_vision(VisionConfig(feature_layer="penultimate"))
    pen.load_state_dict(last.state_dict())
    a, b = last(images()), pen(images())
    assert a.shape == b.shape and not torch.allclose(a, b)


def test_vision_weights_load_from_local_safetensors(tmp_path):
    torch.manual_seed(0)
    src = build_vision(VisionConfig())
    save_file(src.vit.state_dict(), tmp_path / "vit.safetensors")
    torch.manual_seed(1)
    dst = build_vision(VisionConfig(weights=str(tmp_path / "vit.safetensors")))
    assert torch.equal(src(images()), dst(images()))


def test_missing_vision_weights_raise_with_path(tmp_path):
    with pytest.raises(AblateError, match="nope.safetensors"):
        build_vision(VisionConfig(weights=str(tmp_path / "nope.safetensors")))


@pytest.mark.parametrize("kind, tokens", [("resampler", 8), ("linear", 17), ("mlp", 17)])
def test_connector_output_shape(kind, tokens):
    connector = CONNECTORS.get(kind)(ConnectorConfig(kind=kind), 48, 64)
    assert connector(torch.randn(2, 17, 48)).shape == (2, tokens, 64)


@pytest.mark.parametrize("every, expected", [(1, [0, 1, 2, 3]), (2, [1, 3])])
def test_adapters_inserted_every_mth_block(every, expected):
    model = make(with_(with_(ModelConfig(), "llm", num_layers=4), "adapter", every=every))
    layers = decoder_layers(model.llm)
    assert [i for i, layer in enumerate(layers) if hasattr(layer, "adapter")] == expected
    assert list(model.adapters) == [layers[i].adapter for i in expected]


def test_no_adapters_with_kind_none():
    model = make(with_(ModelConfig(), "adapter", kind="none"))
    assert len(model.adapters) == 0
    assert not any(hasattr(layer, "adapter") for layer in decoder_layers(model.llm))
    assert ADAPTERS.names() == ["bottleneck", "none"]


def test_adapter_hook_rewrites_layer_outputs():
    model = make()
    ids = torch.randint(3, VOCAB, (2, 5))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        with_adapters = model(images(), ids, mask).logits
        for adapter in model.adapters:
            adapter.scale.zero_()  # scale 0 -> identity adapter
        without = model(images(), ids, mask).logits
        plain = model.llm.__class__(model.llm.config)
        plain.load_state_dict(model.llm.state_dict(), strict=False)
    assert not torch.allclose(with_adapters, without)
    embeds, full_mask = model.embed(images(), ids, mask)
    assert torch.allclose(
        without, plain(inputs_embeds=embeds, attention_mask=full_mask).logits[:, -5:], atol=1e-6
    )


@pytest.mark.parametrize("flags", [(False, True, False, True), (True, False, True, False)])
def test_freeze_policy_counts(flags):
    cfg = ModelConfig()
    for part, flag in zip(("vision", "connector", "llm", "adapter"), flags, strict=True):
        cfg = with_(cfg, part, trainable=flag)
    model = make(cfg)
    rows = apply_freeze_policy(model, cfg)
    d = 64  # LLM width; adapter = LayerNorm + down (d -> d/2) + up (d/2 -> d) + scale, in 2 blocks
    adapter_params = 2 * (2 * d + (d * d // 2 + d // 2) + (d // 2 * d + d) + 1)
    llm_params = numel([model.llm]) - adapter_params
    expected = {
        "vision": numel([model.vision]),
        "connector": numel([model.connector]),
        "llm": llm_params,
        "adapters": adapter_params,
    }
    assert {r["component"]: r["params"] for r in rows} == expected
    trainable = sum(n for n, flag in zip(expected.values(), flags, strict=True) if flag)
    assert sum(r["trainable_params"] for r in rows) == trainable
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable
    lines = format_freeze_table(rows)
    assert len(lines) == 5 and lines[0].split()[:2] == ["vision", "trainable" if flags[0] else "frozen"]


def test_loss_finite_and_drops_on_a_fixed_batch():
    cfg = ModelConfig()
    model = make(cfg)
    apply_freeze_policy(model, cfg)
    ids = torch.randint(3, VOCAB, (4, 8), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0  # right padding
    labels = ids.masked_fill(mask == 0, -100)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(8):
        loss = model(images(4), ids, mask, labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] - 0.1


def left_pad(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, prompts))
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def test_left_padded_prefix_is_pads_then_visual_then_prompt():
    model = make()
    ids, mask = left_pad([[5, 6, 7], [8]])
    with torch.no_grad():
        embeds, full = model.embed(images(2), ids, mask, left_padded=True)
        visual = model.connector(model.vision(images(2)))  # [2, 8, 64]
        prompt = model.llm.get_input_embeddings()(torch.tensor([8]))
    assert full.tolist() == [[1] * 11, [0, 0] + [1] * 9]  # 8 visual tokens + prompt
    assert torch.allclose(embeds[0, :8], visual[0]) and torch.allclose(embeds[1, 2:10], visual[1])
    assert torch.equal(embeds[1, -1:], prompt)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_batched_left_padded_generate_equals_one_by_one(num_beams):
    model = make().eval()
    with torch.no_grad():  # a sharper LM head so float noise cannot flip near-tied argmaxes
        model.llm.get_output_embeddings().weight.mul_(20)
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    imgs = images(3)
    batched = model.generate(
        imgs, *left_pad(prompts), max_new_tokens=6, num_beams=num_beams, eos_token_id=EOS
    )
    single = [
        model.generate(
            imgs[i : i + 1], *left_pad([p]), max_new_tokens=6, num_beams=num_beams, eos_token_id=EOS
        )[0]
        for i, p in enumerate(prompts)
    ]
    assert batched == single
    assert all(0 < len(s) <= 6 and EOS not in s for s in single)


def test_generate_returns_new_tokens_cut_before_eos():
    model = make().eval()
    with torch.no_grad():
        model.llm.get_output_embeddings().weight.zero_()  # all logits tie -> greedy always picks token 0
    ids, mask = left_pad([[5, 6], [7]])
    assert model.generate(images(2), ids, mask, max_new_tokens=4, eos_token_id=EOS) == [[0] * 4] * 2
    assert model.generate(images(2), ids, mask, max_new_tokens=4, eos_token_id=0) == [[], []]


def test_build_llm_missing_path_raises(tmp_path):
    with pytest.raises(AblateError, match="nothing is downloaded"):
        build_llm(LLMConfig(path=str(tmp_path / "missing")), VOCAB, PAD, BOS, EOS)
    with pytest.raises(AblateError, match="config.json"):
        build_llm(LLMConfig(path=str(tmp_path)), VOCAB, PAD, BOS, EOS)


def test_build_llm_loads_a_saved_folder(tmp_path):
    torch.manual_seed(0)
    llm = build_llm(LLMConfig(), VOCAB, PAD, BOS, EOS)
    llm.save_pretrained(tmp_path / "llm")
    loaded = build_llm(LLMConfig(path=str(tmp_path / "llm")), VOCAB, PAD, BOS, EOS)
    ids = torch.randint(3, VOCAB, (2, 7))
    with torch.no_grad():
        assert torch.equal(llm(ids).logits, loaded(ids).logits)

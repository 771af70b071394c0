"""Model tests on real tiny components from `ModelConfig()` defaults (random init, nothing downloaded)."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file

from harness.config.schema import (
    DEFAULT_TRAINABLE,
    AdapterConfig,
    ConnectorConfig,
    FusionConfig,
    GenerationConfig,
    LLMConfig,
    ModelConfig,
    StageConfig,
    VisionConfig,
)
from harness.errors import AblateError
from harness.model import (
    ADAPTERS,
    CONNECTORS,
    FUSIONS,
    MultimodalLM,
    apply_freeze_policy,
    build_model,
    format_freeze_table,
    parameter_report,
)
from harness.model.llm import build_llm, decoder_layers
from harness.model.vision import build_vision

VOCAB, PAD, BOS, EOS = 100, 0, 1, 2


def conf(**parts) -> ModelConfig:
    """`ModelConfig()` with fields of parts replaced: conf(fusion=dict(kind="cross_attn"))."""
    cfg = ModelConfig()
    return dataclasses.replace(cfg, **{k: dataclasses.replace(getattr(cfg, k), **v) for k, v in parts.items()})


def make(cfg: ModelConfig | None = None, seed: int = 0) -> MultimodalLM:
    torch.manual_seed(seed)
    return build_model(cfg or ModelConfig(), VOCAB, PAD, BOS, EOS)


def images(b: int = 2, f: int = 1, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, f, 3, size, size, generator=torch.Generator().manual_seed(seed))


def frames(*counts: int, f: int | None = None) -> torch.Tensor:
    """frames_mask [B, F] with counts[i] real frames in row i (0 = text only)."""
    f = f or max(max(counts), 1)
    return torch.arange(f)[None, :] < torch.tensor(counts)[:, None]


def text(b: int, t: int, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(3, VOCAB, (b, t), generator=torch.Generator().manual_seed(seed))
    return ids, torch.ones_like(ids)


# --- vision -------------------------------------------------------------------------------------------------


def test_vision_runs_at_low_and_high_resolution_with_all_tokens():
    enc = build_vision(VisionConfig())  # built at 32 px, patch 8
    assert enc(images(2)[:, 0]).shape == (2, 4 * 4 + 1, 64)
    assert enc(images(2, size=64)[:, 0]).shape == (2, 8 * 8 + 1, 64)  # pos embed interpolated
    assert enc.vit.pos_embed.shape[1] == 17 and enc.out_dim == 64


def test_penultimate_features_differ_from_last():
    torch.manual_seed(0)
    last = build_vision(VisionConfig())
    pen = build_vision(VisionConfig(feature_layer="penultimate"))
    pen.load_state_dict(last.state_dict())
    a, b = last(images()[:, 0]), pen(images()[:, 0])
    assert a.shape == b.shape and not torch.allclose(a, b)


def test_vision_weights_from_a_file_and_from_a_zoo_folder(tmp_path):
    torch.manual_seed(0)
    src = build_vision(VisionConfig())
    save_file(src.vit.state_dict(), tmp_path / "vit.safetensors")
    torch.manual_seed(1)
    dst = build_vision(VisionConfig(), str(tmp_path / "vit.safetensors"))
    x = images()[:, 0]
    assert torch.equal(src(x), dst(x))
    bigger = build_vision(VisionConfig(image_size=64), str(tmp_path / "vit.safetensors"))  # pos_embed resampled
    assert bigger.vit.pos_embed.shape[1] == 65 and bigger(images(2, size=64)[:, 0]).shape == (2, 65, 64)
    # A folder's config.json decides the architecture, whatever the config's sizes say.
    folder = tmp_path / "vit-zoo"
    folder.mkdir()
    spec = {"model": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 3,
            "num_heads": 2, "linear_probe_acc": 0.9}
    (folder / "config.json").write_text(json.dumps(spec))
    torch.manual_seed(2)
    small = build_vision(VisionConfig(width=32, depth=3, heads=2))
    save_file(small.vit.state_dict(), folder / "model.safetensors")
    loaded = build_vision(VisionConfig(), str(folder))
    assert loaded.out_dim == 32 and len(loaded.vit.blocks) == 3 and torch.equal(loaded(x), small(x))
    # The README's layout: the weight file is named, and the config.json beside it holds flat timm kwargs.
    loaded = build_vision(VisionConfig(), str(folder / "model.safetensors"))
    assert loaded.out_dim == 32 and len(loaded.vit.blocks) == 3 and torch.equal(loaded(x), small(x))
    # The zoo's layout: resolve_source gives the weight file; the config.json next to it has "create_model".
    zoo = {"create_model": {"model_name": spec["model"], "pretrained": False, "num_classes": 0, "img_size": 32,
                            "patch_size": 8, "embed_dim": 32, "depth": 3, "num_heads": 2, "dynamic_img_size": True},
           "quality": {"recall@1": 0.5}}
    (folder / "config.json").write_text(json.dumps(zoo))
    loaded = build_vision(VisionConfig(), str(folder / "model.safetensors"))
    assert loaded.out_dim == 32 and torch.equal(loaded(x), small(x))
    assert loaded(images(2, size=64)[:, 0]).shape == (2, 65, 32)


def test_missing_or_unresolved_vision_weights_raise(tmp_path):
    with pytest.raises(AblateError, match="nope.safetensors"):
        build_vision(VisionConfig(), str(tmp_path / "nope.safetensors"))
    with pytest.raises(AblateError, match="resolve"):
        build_vision(VisionConfig(weights="zoo:vit-large"))


def test_frames_encoded_separately_with_frame_embedding_and_padding_masked():
    model = make()
    vid = images(2, f=3)
    with torch.no_grad():
        tokens, mask = model.frames(model.vision, vid, frames(3, 1))  # row 1: one real frame, two padding frames
        single = model.vision(vid[1, :1]) + model.frames.embed[0]
    assert tokens.shape == (2, 3 * 17, 64) and mask.tolist() == [[True] * 51, [True] * 17 + [False] * 34]
    assert torch.allclose(tokens[1, :17], single[0], atol=1e-6)
    assert not torch.allclose(tokens[0, :17], tokens[0, 17:34])  # frames differ (and so do their embeddings)
    with pytest.raises(AblateError, match="max_frames"):
        model.frames(model.vision, images(1, f=6), frames(6))


# --- connectors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, tokens", [("resampler", ConnectorConfig().num_queries), ("linear", 17), ("mlp", 17)])
def test_connector_shapes_and_masks(kind, tokens):
    connector = CONNECTORS.get(kind)(ConnectorConfig(kind=kind), 48, 64)
    mask = torch.ones(3, 17, dtype=torch.bool)
    mask[1, 9:] = False
    mask[2] = False  # text-only row
    out, out_mask = connector(torch.randn(3, 17, 48), mask)
    assert out.shape == (3, tokens, 64) and torch.isfinite(out).all()
    assert out_mask.shape == (3, tokens) and not out_mask[2].any() and out_mask[0].all()


def test_resampler_ignores_masked_keys():
    torch.manual_seed(0)
    connector = CONNECTORS.get("resampler")(ConnectorConfig(), 48, 64)
    x = torch.randn(1, 17, 48)
    mask = torch.arange(17)[None] < 9
    noisy = torch.where(mask[..., None], x, torch.randn_like(x) * 100)
    a, _ = connector(noisy, mask)
    b, _ = connector(x[:, :9], mask[:, :9])
    assert torch.allclose(a, b, atol=1e-5)


# --- adapters -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("every, expected", [(1, [0, 1, 2, 3]), (2, [1, 3])])
def test_adapters_inserted_every_mth_block(every, expected):
    model = make(conf(llm=dict(num_layers=4), adapter=dict(every=every)))
    layers = decoder_layers(model.llm)
    assert [i for i, layer in enumerate(layers) if hasattr(layer, "adapter")] == expected
    assert model.adapter_modules == [layers[i].adapter for i in expected]


def test_registries():
    assert ADAPTERS.names() == ["bottleneck", "lora", "none"]
    assert CONNECTORS.names() == ["linear", "mlp", "resampler"]
    assert FUSIONS.names() == ["cross_attn", "prefix"]


def bare_llm(model: MultimodalLM):
    """A plain copy of the model's LLM (no adapters, no fusion hooks), same weights."""
    plain = type(model.llm)(model.llm.config)
    state = {k.replace(".base_layer", ""): v for k, v in model.llm.state_dict().items()
             if ".adapter." not in k and "lora_" not in k}
    plain.load_state_dict(state)
    return plain.eval()


def test_bottleneck_scale_zero_is_identity_and_none_adds_nothing():
    model = make().eval()
    ids, mask = text(2, 5)
    fm = frames(0, 0)  # text-only rows: the logits are the LLM's own
    with torch.no_grad():
        with_adapters = model(images(2), fm, ids, mask).logits
        for adapter in model.adapter_modules:
            adapter.scale.zero_()
        without = model(images(2), fm, ids, mask).logits
        plain = bare_llm(model)(ids).logits
    assert not torch.allclose(with_adapters, without)
    assert torch.allclose(without, plain, atol=1e-5)
    none = make(conf(adapter=dict(kind="none")))
    assert none.adapter_modules == [] and not any(hasattr(la, "adapter") for la in decoder_layers(none.llm))


def test_lora_starts_as_identity_counts_and_generates():
    cfg = conf(adapter=dict(kind="lora", lora_rank=4))
    model = make(cfg).eval()
    rows = {r["component"]: r for r in apply_freeze_policy(model, cfg, StageConfig())}
    d, layers = 64, 2
    assert rows["adapters"]["params"] == layers * 4 * (d * 4 + 4 * d)  # q, k, v, o: A [4, d] + B [d, 4]
    assert rows["llm"]["trainable_params"] == 0
    ids, mask = text(2, 5)
    with torch.no_grad():
        assert torch.allclose(model(images(2), frames(0, 0), ids, mask).logits, bare_llm(model)(ids).logits, atol=1e-5)
    out = model.generate(images(2), frames(1, 1), ids, mask, GenerationConfig(max_new_tokens=3, num_beams=2), EOS)
    assert len(out) == 2 and all(len(o) <= 3 for o in out)


# --- fusion -------------------------------------------------------------------------------------------------


def test_cross_attn_blocks_inserted_every_kth_layer_and_frozen_llm_unchanged_at_init():
    cfg = conf(fusion=dict(kind="cross_attn", every=2), llm=dict(num_layers=4), adapter=dict(kind="none"))
    model = make(cfg).eval()
    assert len(model.fusion.blocks) == 2
    ids, mask = text(2, 6)
    with torch.no_grad():
        logits = model(images(2), frames(1, 1), ids, mask).logits
        plain = bare_llm(model)(ids).logits
        assert torch.equal(logits, plain)  # tanh(0) gates: exactly the bare LLM
        for block in model.fusion.blocks:
            block.attn_gate.fill_(1.0)
        assert not torch.allclose(model(images(2), frames(1, 1), ids, mask).logits, plain)


def test_prefix_text_only_row_ignores_its_visual_tokens():
    model = make().eval()
    ids, mask = text(2, 6)
    with torch.no_grad():
        mixed = model(images(2), frames(1, 0), ids, mask).logits
        alone = model(images(1, seed=9), frames(0), ids[1:], mask[1:]).logits
    assert torch.allclose(mixed[1], alone[0], atol=1e-5)
    assert not torch.allclose(mixed[0], mixed[1])


# --- freeze policy and training -----------------------------------------------------------------------------


@pytest.mark.parametrize("train_llm, train_vision", [(False, False), (True, True)])
def test_freeze_policy_counts(train_llm, train_vision):
    cfg = conf(fusion=dict(kind="cross_attn"), adapter=dict(every=1))
    model = make(cfg)
    trainable = [*DEFAULT_TRAINABLE, *(["llm"] if train_llm else []), *(["vision"] if train_vision else [])]
    rows = apply_freeze_policy(model, cfg, StageConfig(trainable=trainable))
    d = 64  # LLM width; adapter = LayerNorm + down (d -> d/2) + up (d/2 -> d) + scale, in 2 blocks
    adapter_params = 2 * (2 * d + (d * d // 2 + d // 2) + (d // 2 * d + d) + 1)
    # cross-attention block: 2 LayerNorms, q, kv, proj (no bias), FFN with pre-LayerNorm, 2 gates; 2 blocks
    block = 2 * 2 * d + d * d + 2 * d * d + d * d + (2 * d + d * 4 * d + 4 * d + 4 * d * d + d) + 2
    numel = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    expected = {
        "vision": numel(model.vision), "connector": numel(model.connector), "fusion": 2 * block,
        "llm": numel(model.llm) - adapter_params, "adapters": adapter_params, "frames": 5 * 64,
    }
    assert {r["component"]: r["params"] for r in rows} == expected
    trainable = sum(expected.values()) - (not train_llm) * expected["llm"] - (not train_vision) * expected["vision"]
    assert sum(r["trainable_params"] for r in rows) == trainable
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable
    lines = format_freeze_table(rows)
    assert len(lines) == 7 and lines[0].split()[:2] == ["vision", "trainable" if train_vision else "frozen"]


@pytest.mark.parametrize("fusion, connector", [("prefix", "resampler"), ("cross_attn", "linear")])
def test_mixed_batch_trains_without_nan(fusion, connector):
    cfg = conf(fusion=dict(kind=fusion), connector=dict(kind=connector))
    model = make(cfg)
    apply_freeze_policy(model, cfg, StageConfig())
    # rows: an image, a 3-frame video, a 2-frame video (one padding frame), a text-only sample
    imgs, fm = images(4, f=3), frames(1, 3, 2, 0)
    ids, mask = text(4, 8)
    mask[0, 6:] = 0  # right padding
    labels = ids.masked_fill(mask == 0, -100)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(6):
        out = model(imgs, fm, ids, mask, labels)
        assert out.logits is None and torch.isfinite(out.loss)  # with labels: the loss only
        opt.zero_grad()
        out.loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < losses[0] - 0.1
    assert model.frames.embed.grad[1:3].abs().sum() > 0  # video frame embeddings learn


# --- generation ---------------------------------------------------------------------------------------------


def left_pad(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, prompts))
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


@pytest.mark.parametrize("fusion, num_beams", [("prefix", 1), ("prefix", 3), ("cross_attn", 1), ("cross_attn", 3)])
def test_batched_left_padded_generate_equals_one_by_one(fusion, num_beams):
    model = make(conf(fusion=dict(kind=fusion))).eval()
    with torch.no_grad():  # a sharper LM head so float noise cannot flip near-tied argmaxes
        model.llm.get_output_embeddings().weight.mul_(20)
        for block in getattr(model.fusion, "blocks", []):  # open the gates so the images matter
            block.attn_gate.fill_(1.0)
            block.ffn_gate.fill_(1.0)
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    imgs, fm = images(3, f=2), frames(2, 1, 0)
    gen = GenerationConfig(max_new_tokens=6, num_beams=num_beams, no_repeat_ngram_size=2)
    batched = model.generate(imgs, fm, *left_pad(prompts), gen, EOS)
    single = [model.generate(imgs[i : i + 1], fm[i : i + 1], *left_pad([p]), gen, EOS)[0] for i, p in enumerate(prompts)]
    assert batched == single
    assert all(0 < len(s) <= 6 and EOS not in s for s in single)
    other = model.generate(images(3, f=2, seed=7), fm, *left_pad(prompts), gen, EOS)
    assert other[2] == batched[2]  # the text-only row does not see its (masked) frames


@pytest.mark.parametrize("fusion", ["prefix", "cross_attn"])
def test_training_forward_and_generation_see_the_same_sequence(fusion):
    """The first generated token is the argmax of the training forward's logits after the prompt, for a batch
    mixing prompt lengths, images and a text-only row: visual prefix, padding and position ids agree between the
    right-padded training layout and the left-padded generation layout."""
    model = make(conf(fusion=dict(kind=fusion))).eval()
    with torch.no_grad():
        model.llm.get_output_embeddings().weight.mul_(20)
        for block in getattr(model.fusion, "blocks", []):
            block.attn_gate.fill_(1.0)
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    imgs, fm = images(3, f=2), frames(2, 1, 0)
    first = [t[0] for t in model.generate(imgs, fm, *left_pad(prompts), GenerationConfig(max_new_tokens=1), EOS)]
    width = max(map(len, prompts))
    ids = torch.tensor([p + [PAD] * (width - len(p)) for p in prompts])
    mask = torch.tensor([[1] * len(p) + [0] * (width - len(p)) for p in prompts])
    with torch.no_grad():
        logits = model(imgs, fm, ids, mask).logits  # [B, T, V], aligned with the text
    assert first == [int(logits[i, len(p) - 1].argmax()) for i, p in enumerate(prompts)]


def test_loss_counts_only_answer_tokens_never_the_visual_prefix():
    """Labels of -100 (prompt) and the visual prefix carry no loss: the loss equals the cross-entropy of the
    answer positions alone, computed from the text-aligned logits."""
    model = make()
    ids, mask = text(2, 8)
    labels = ids.clone()
    labels[:, :5] = -100  # prompt
    out = model(images(2), frames(1, 1), ids, mask, labels=labels)
    logits = model(images(2), frames(1, 1), ids, mask).logits
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(),
                                                 ignore_index=-100)
    assert torch.allclose(out.loss, expected, atol=1e-5)


@pytest.mark.parametrize("fusion, llm", [("prefix", "frozen"), ("cross_attn", "frozen"), ("prefix", "trainable")])
def test_the_loss_and_its_gradients_equal_transformers_own_full_forward(fusion, llm):
    """The output head runs only where a label is supervised, and padding frames' keys are never projected:
    the loss and every gradient equal those of the LLM's own forward over all positions (labels given to it)
    with the keys of every token, padding included, projected."""
    from harness.model.connectors import CrossAttention
    from harness.model.llm import supervised_loss

    cfg = conf(fusion=dict(kind=fusion))
    model = make(cfg)
    trains = ["connector", "fusion", "adapters", "frames"] + (["llm"] if llm == "trainable" else [])
    apply_freeze_policy(model, cfg, StageConfig(trainable=trains))
    imgs, fm = images(3, f=3), frames(1, 3, 0)  # an image (2 padding frames), a video, a text-only row
    ids, mask = text(3, 8)
    mask[0, 6:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :4] = -100

    def grads(loss):
        model.zero_grad(set_to_none=True)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    fast = grads(model(imgs, fm, ids, mask, labels).loss)
    import harness.model.mllm as mllm

    def full_loss(llm, inputs, labels):
        return llm(**inputs, labels=labels).loss

    def every_key(self, x, mask):
        return self.to_kv(self.norm_kv(x))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mllm, "supervised_loss", full_loss)
        mp.setattr(CrossAttention, "keys_values", every_key)
        slow = grads(model(imgs, fm, ids, mask, labels).loss)
    assert supervised_loss is not full_loss and torch.allclose(fast[0], slow[0], atol=1e-6)
    assert fast[1].keys() == slow[1].keys() and len(fast[1]) > 0
    assert (llm == "trainable") == ("llm.lm_head.weight" in fast[1])
    for name, grad in fast[1].items():
        assert torch.allclose(grad, slow[1][name], atol=1e-6), name


def test_generate_returns_new_tokens_cut_before_eos():
    model = make().eval()
    with torch.no_grad():
        model.llm.get_output_embeddings().weight.zero_()  # all logits tie -> greedy always picks token 0
    ids, mask = left_pad([[5, 6], [7]])
    gen = GenerationConfig(max_new_tokens=4)
    assert model.generate(images(2), frames(1, 1), ids, mask, gen, EOS) == [[0] * 4] * 2
    assert model.generate(images(2), frames(1, 1), ids, mask, gen, 0) == [[], []]


# --- LLM loading --------------------------------------------------------------------------------------------


def test_build_llm_missing_or_unresolved_source_raises(tmp_path):
    with pytest.raises(AblateError, match="nothing is downloaded"):
        build_llm(LLMConfig(source=str(tmp_path / "missing")), VOCAB, PAD, BOS, EOS)
    with pytest.raises(AblateError, match="config.json"):
        build_llm(LLMConfig(source=str(tmp_path)), VOCAB, PAD, BOS, EOS)
    with pytest.raises(AblateError, match="resolve"):
        build_llm(LLMConfig(source="zoo:llm-base"), VOCAB, PAD, BOS, EOS)


def test_build_llm_loads_a_saved_folder(tmp_path):
    torch.manual_seed(0)
    llm = build_llm(LLMConfig(), VOCAB, PAD, BOS, EOS)
    llm.save_pretrained(tmp_path / "llm")
    loaded = build_llm(LLMConfig(source=str(tmp_path / "llm")), VOCAB, PAD, BOS, EOS)
    ids = torch.randint(3, VOCAB, (2, 7))
    with torch.no_grad():
        assert torch.equal(llm(ids).logits, loaded(ids).logits)


# --- paper scale --------------------------------------------------------------------------------------------


def paper_config(adapter_every: int) -> ModelConfig:
    """Lynx's shapes: EVA ViT-g/14 (39 blocks) at 420 px, LLaMA-7B, resampler 32 x 3 layers, adapters 4096->2048."""
    return ModelConfig(
        vision=VisionConfig(model="eva_giant_patch14_224", image_size=420, high_res_size=420, patch_size=14,
                            width=1408, depth=39, heads=16),
        connector=ConnectorConfig(num_queries=32, depth=3, heads=8, head_dim=64, ffn_mult=4),
        fusion=FusionConfig(),
        llm=LLMConfig(hidden_size=4096, intermediate_size=11008, num_layers=32, num_heads=32, max_positions=2048),
        adapter=AdapterConfig(every=adapter_every, reduction=2),
    )


@pytest.mark.parametrize("every, total", [(1, 8.68e9), (2, 8.41e9)])
def test_paper_scale_parameter_report(every, total):
    rows = {r["component"]: r for r in parameter_report(copy.deepcopy(paper_config(every)), 32000)}
    approx = lambda n, ref: abs(n - ref) <= 0.02 * ref  # noqa: E731
    assert approx(rows["vision"]["params"], 1.0e9) and not rows["vision"]["trainable"]
    assert approx(rows["llm"]["params"], 6.74e9) and not rows["llm"]["trainable"]
    assert approx(rows["connector"]["params"], 0.42e9)
    assert approx(rows["adapters"]["params"], 16.8e6 * 32 // every)
    assert approx(sum(r["params"] for r in rows.values()), total)
    assert approx(sum(r["trainable_params"] for r in rows.values()), rows["connector"]["params"]
                  + rows["adapters"]["params"] + rows["frames"]["params"])


def test_a_stage_trains_exactly_the_components_it_lists():
    """`trainable` is data: a stage may freeze a component that Lynx always trains (here the connector) or train
    one it freezes (the LLM), and nothing else changes."""
    cfg = conf(fusion=dict(kind="cross_attn"), adapter=dict(every=1))
    model = make(cfg)
    rows = apply_freeze_policy(model, cfg, StageConfig(trainable=["fusion", "llm", "adapters"]))
    assert {r["component"] for r in rows if r["trainable"]} == {"fusion", "llm", "adapters"}
    assert not any(p.requires_grad for p in model.connector.parameters())
    assert all(p.requires_grad for p in model.fusion.parameters())

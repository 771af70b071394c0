"""Sequence packing (harness/model/packing.py): the LLM trains on packed rows of real positions, and the loss and
every gradient are those of the padded batch."""

from __future__ import annotations

import pytest
import torch
from test_model import conf, frames, images, make, text

from harness.config.schema import StageConfig
from harness.model import apply_freeze_policy
from harness.model.packing import Packing, first_fit_decreasing


def test_first_fit_decreasing_places_every_sample_once_within_the_capacity():
    lengths = [9, 3, 4, 10, 1, 6, 2]
    rows = first_fit_decreasing(lengths, 10)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 10 for row in rows)
    assert len(rows) == 4 and rows[0] == [3]  # 35 positions in rows of 10; the longest first
    assert all(row == sorted(row) for row in rows)  # a row keeps batch order


def test_pack_then_unpack_restores_every_real_position_and_zeros_the_padding():
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]]).bool()
    x = torch.randn(4, 6, 3)
    packing = Packing.of(mask)
    assert packing.rows == 2  # 6 | 2 + 3 + 1
    packed = packing.pack(x)
    assert packed.shape == (2, 6, 3)
    assert torch.equal(packed[1, :2], x[1, 2:4]) and torch.equal(packed[1, 2:5], x[2, :3])
    assert torch.equal(packed[1, 5], x[3, 0])
    assert torch.equal(packing.unpack(packed), x * mask[..., None])


def test_the_mask_is_causal_within_a_sample_and_blind_across_samples():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]]).bool()
    packing = Packing.of(mask)
    attend = packing.attention_mask()[:, 0]
    row = next(r for r in range(packing.rows) if (packing.segment[r] == 0).any())  # samples 0 and 1 share it
    assert packing.segment[row].tolist() == [0, 0, 0, 1]
    assert attend[row].tolist() == [[True, False, False, False], [True, True, False, False],
                                    [True, True, True, False], [False, False, False, True]]
    full = next(r for r in range(packing.rows) if (packing.segment[r] == 2).all())
    assert torch.equal(attend[full], torch.ones(4, 4, dtype=torch.bool).tril())


def test_a_packed_rows_padding_attends_only_to_itself():
    packing = Packing.of(torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]).bool())
    attend = packing.attention_mask()[:, 0]
    pad_row = next(r for r in range(packing.rows) if (packing.segment[r] < 0).any())
    assert attend[pad_row, 3].tolist() == [False, False, False, True]


@pytest.mark.parametrize("fusion, llm", [("prefix", "frozen"), ("cross_attn", "frozen"), ("prefix", "trainable"),
                                         ("cross_attn", "trainable")])
def test_packed_training_gives_the_padded_loss_and_gradients(fusion, llm):
    """Rows of different lengths, a video with padding frames, text-only rows (a prefix model masks their visual
    positions): packed into fewer rows than the batch, the loss and every gradient are the padded batch's."""
    cfg = conf(fusion=dict(kind=fusion))
    model = make(cfg)
    trains = ["connector", "fusion", "adapters", "frames"] + (["llm"] if llm == "trainable" else [])
    apply_freeze_policy(model, cfg, StageConfig(trainable=trains))
    imgs, fm = images(4, f=3), frames(3, 1, 0, 0)  # a video, an image (2 padding frames), two text-only rows
    ids, mask = text(4, 8)
    for row, length in enumerate([8, 3, 4, 3]):
        mask[row, length:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, 0] = -100

    def grads(pack: bool):
        model.zero_grad(set_to_none=True)
        loss = model(imgs, fm, ids, mask, labels, pack=pack).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    seen = []
    original = Packing.of
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Packing, "of", classmethod(lambda cls, m: seen.append(original(m)) or seen[-1]))
        packed = grads(True)
    padded = grads(False)
    assert len(seen) == 1 and seen[0].rows < 4  # it did pack
    assert torch.allclose(packed[0], padded[0], atol=1e-6)
    assert packed[1].keys() == padded[1].keys() and len(packed[1]) > 0
    assert (llm == "trainable") == ("llm.lm_head.weight" in packed[1])
    for name, grad in packed[1].items():
        assert torch.allclose(grad, padded[1][name], atol=1e-6), name


def test_an_llm_without_sdpa_attention_trains_padded(monkeypatch):
    """Eager attention adds a boolean mask to the scores (0 / 1) instead of masking: packed samples would see each
    other, so such an LLM is never packed."""
    model = make(conf())
    model.llm.config._attn_implementation = "eager"
    monkeypatch.setattr(Packing, "of", classmethod(lambda cls, m: pytest.fail("packed an eager-attention LLM")))
    ids, mask = text(2, 6)
    mask[1, 3:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    packed = model(images(2), frames(1, 0), ids, mask, labels, pack=True).loss
    assert torch.equal(packed, model(images(2), frames(1, 0), ids, mask, labels, pack=False).loss)


def test_packing_is_the_default_and_padded_runs_keep_their_old_key():
    from harness.resolve import NEUTRAL_WHEN_ADDED, _digest, config_hash, resolve, training_settings

    packed = resolve("lynx", "tiny").config
    padded = resolve("lynx", "tiny", cli={"train.sequence_packing": False}).config
    assert packed.train.sequence_packing and not padded.train.sequence_packing
    assert config_hash(packed) != config_hash(padded)  # packing changes the order of sums: another run
    settings = {k: v for k, v in training_settings(padded).items()
                if k != "train.sequence_packing" and not (k in NEUTRAL_WHEN_ADDED and v == NEUTRAL_WHEN_ADDED[k])}
    assert config_hash(padded) == _digest(settings)  # the key a padded run had before the setting existed


def test_a_training_stage_passes_the_setting_to_the_model(monkeypatch):
    from harness.training import MultimodalModule

    model = make(conf())
    calls = []
    forward = type(model).forward
    monkeypatch.setattr(type(model), "forward", lambda self, *a, **k: calls.append(k.get("pack")) or forward(self, *a, **k))
    ids, mask = text(2, 6)
    batch = {"images": images(2), "frames_mask": frames(1, 0), "input_ids": ids, "attention_mask": mask,
             "labels": ids.clone()}
    for pack in (True, False):
        module = MultimodalModule(model, StageConfig(), 0.0, pack=pack)
        module.cost = {"counted": 1.0}  # past the first step's FLOP count
        module.log = lambda *a, **k: None
        module.training_step(batch, 0)
    assert calls == [True, False]

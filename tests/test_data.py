"""From shards to batches: chat encoding, mixtures, the datamodule's batch layouts, outside and corrupt shards."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image

from harness.config.schema import DataConfig, WorldConfig
from harness.data import (
    BASE,
    HAND_WEIGHTS,
    IGNORE_INDEX,
    WorldDataModule,
    build_tokenizer,
    build_world,
    encode_dialogue,
    encode_example,
    frame_indices,
    image_to_tensor,
    iter_samples,
    mixture,
    prompt_text,
)
from harness.errors import AblateError

SMALL = WorldConfig(num_images=48, num_noisy=24, num_videos=16, num_text=32, samples_per_shard=16)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(SMALL, tmp_path_factory.getbasetemp() / "world-cache")  # shared with test_world.py


@pytest.fixture(scope="module")
def tokenizer(world):
    return build_tokenizer(world)


def make_dm(world, tokenizer, seed=0, batch_size=8, image_size=32, **data):
    return WorldDataModule(world, DataConfig(**data), tokenizer, image_size, batch_size, seed)


def outside_shard(path: Path, n: int = 3, with_json: bool = True) -> Path:
    """A LAION/CC3M-style shard (jpg + txt, optional json) written with plain tarfile, as an outside tool would."""
    with tarfile.open(path, "w") as tar:
        for i in range(n):
            jpg = io.BytesIO()
            Image.new("RGB", (48, 40), (30 * i, 120, 200)).save(jpg, format="JPEG")
            members = {"jpg": jpg.getvalue(), "txt": f"a blue square number {i}".encode()}
            if with_json:
                members["json"] = json.dumps({"url": f"http://example.com/{i}.jpg", "width": 48}).encode()
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{i:09d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


# ---- chat encoding ---------------------------------------------------------------------------------------------


def test_labels_mask_the_prompt_and_keep_answer_and_eos(tokenizer):
    ex = encode_example(tokenizer, "What colour is the star?", "red", max_len=48)
    answer = tokenizer.encode(" red", add_special_tokens=False)
    n_prompt = len(ex["input_ids"]) - len(answer) - 1
    assert ex["input_ids"][0] == tokenizer.bos_token_id
    assert ex["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert ex["labels"][n_prompt:] == [*answer, tokenizer.eos_token_id] == ex["input_ids"][n_prompt:]
    assert len(encode_example(tokenizer, "What colour is the star?", "red", max_len=5)["labels"]) == 5


def test_sign_texts_are_spelled_one_character_per_token_and_words_stay_whole(tokenizer):
    from harness.data.vocab import SIGN_CHARS

    for a in SIGN_CHARS:
        assert tokenizer.tokenize(a) == [a.lower()]
        for b in SIGN_CHARS:
            if (a + b).lower() not in {"me", "my"}:  # signs that spell a word of the world read as that word
                assert len(tokenizer.tokenize(a + b)) == 2, a + b
    for word in ("the", "three", "here"):  # words of the world made only of sign characters stay whole
        assert tokenizer.tokenize(word) == [word]
    assert tokenizer.unk_token_id not in tokenizer.encode("it says k7 or 2e or yx.")


def test_dialogue_labels_every_assistant_turn(tokenizer):
    ex = encode_dialogue(tokenizer, [("What colour is the star?", "red"), ("Where is this?", "beach")], 64)
    supervised = torch.tensor(ex["labels"])
    answers = tokenizer.decode(supervised[supervised != IGNORE_INDEX])
    assert answers == "red </s> beach </s>"
    assert ex["labels"].count(tokenizer.eos_token_id) == 2
    prompt = tokenizer.decode(torch.tensor(ex["input_ids"])[supervised == IGNORE_INDEX], skip_special_tokens=True)
    assert "where is this?" in prompt and "red" not in prompt


# ---- mixtures --------------------------------------------------------------------------------------------------


def test_hand_weights_are_the_documented_constants(world):
    weights = mixture("finetune", DataConfig(), world)
    total = sum(HAND_WEIGHTS["finetune"].values())
    assert weights == pytest.approx({n: w / total for n, w in HAND_WEIGHTS["finetune"].items()})
    assert 0.25 < weights["text_instructions"] < 0.35  # about 30% text-only, as in Lynx
    assert mixture("high_res", DataConfig(), world) == mixture("pretrain", DataConfig(), world)
    assert set(mixture("pretrain", DataConfig(), world)) == {"captions", "vqa", "place", "text", "video_caption"}


def test_natural_sampling_is_proportional_to_size(world):
    weights = mixture("finetune", DataConfig(sampling="natural"), world)
    sizes = {n: world.size(n) for n in weights}
    assert weights == pytest.approx({n: s / sum(sizes.values()) for n, s in sizes.items()})


def test_balanced_sampling_is_equal(world):
    weights = mixture("finetune", DataConfig(sampling="balanced"), world)
    assert weights == pytest.approx(dict.fromkeys(weights, 1 / len(weights)))


def test_data_flags_change_the_mixture(world, tmp_path):
    base = DataConfig()
    noisy = mixture("pretrain", replace(base, noisy_pretraining=True), world)
    assert noisy["noisy"] > 0.5  # the noisy corpus dominates, as in the paper
    assert "text_instructions" not in mixture("finetune", replace(base, text_instructions=False), world)
    no_video = mixture("finetune", replace(base, video=False), world)
    assert not {"video_qa", "video_caption"} & set(no_video)
    assert "video_caption" not in mixture("pretrain", replace(base, video=False), world)
    heavy, plain = mixture("finetune", replace(base, vqa_weight=3.0), world), mixture("finetune", base, world)
    assert heavy["vqa"] / heavy["caption"] == pytest.approx(3 * plain["vqa"] / plain["caption"])
    shard = outside_shard(tmp_path / "laion-000000.tar", n=3)
    with_shards = replace(base, shards=str(tmp_path / "laion-*.tar"), sampling="natural")
    assert mixture("pretrain", with_shards, world)["shards"] == pytest.approx(
        3 / (3 + sum(world.size(n) for n in ("captions", "vqa", "place", "text", "video_caption"))))
    assert shard.is_file() and "shards" not in mixture("finetune", with_shards, world)


def test_a_stage_draws_the_mixture_it_names_and_an_unknown_mixture_is_an_ablate_error(world):
    assert mixture("polish", DataConfig(), world, mix="finetune") == mixture("finetune", DataConfig(), world)
    assert mixture("high_res", DataConfig(), world, mix="finetune") == mixture("finetune", DataConfig(), world)
    with pytest.raises(AblateError, match="stage 'polish': unknown data mixture 'warmup'; expected one of"):
        mixture("polish", DataConfig(), world, mix="warmup")
    with pytest.raises(AblateError, match=r"stage 'polish' is not one of the paper's .* say which data mixture it "
                                          r"draws \(train.polish.mixture"):
        mixture("polish", DataConfig(), world)  # an added stage never falls back to pretraining's data silently


# ---- training batches ------------------------------------------------------------------------------------------


def test_a_mixed_image_video_text_batch_has_the_contract_layout(world, tokenizer):
    batch = next(iter(make_dm(world, tokenizer, batch_size=24).stage_dataloader("finetune")))
    B, F = batch["images"].shape[:2]
    assert batch["images"].shape == (24, SMALL.num_frames, 3, 32, 32) and batch["images"].dtype == torch.float32
    assert batch["frames_mask"].shape == (B, F) and batch["frames_mask"].dtype == torch.bool
    assert set(batch["frames_mask"].sum(1).tolist()) == {0, 1, SMALL.num_frames}  # text, image, video rows
    text_rows = ~batch["frames_mask"].any(1)
    assert (batch["images"][text_rows] == 0).all() and (batch["images"][~batch["frames_mask"]] == 0).all()
    assert batch["images"].min() >= -1 and batch["images"].max() <= 1
    for k in ("input_ids", "attention_mask", "labels"):
        assert batch[k].dtype == torch.long and batch[k].shape == batch["input_ids"].shape
    pads = batch["attention_mask"] == 0
    assert pads.any() and not pads[:, 0].any()  # right-padded
    assert (batch["input_ids"][pads] == tokenizer.pad_token_id).all() and (batch["labels"][pads] == IGNORE_INDEX).all()
    assert (batch["labels"] != IGNORE_INDEX).any(1).all()  # every row supervises something


def test_stage_image_size_and_video_frames(world, tokenizer):
    dm = make_dm(world, tokenizer, batch_size=16, video_frames=1)
    batch = next(iter(dm.stage_dataloader("finetune", image_size=64)))
    assert batch["images"].shape[1:] == (1, 3, 64, 64)
    assert frame_indices(5, 1) == [2] and frame_indices(5, 5) == [0, 1, 2, 3, 4] and frame_indices(5, 3) == [0, 2, 4]
    assert next(iter(dm.stage_dataloader("pretrain")))["images"].shape[-1] == 32


def test_same_seed_gives_identical_batches_and_another_seed_others(world, tokenizer):
    def first(seed, **data):
        loader = iter(make_dm(world, tokenizer, seed=seed, **data).stage_dataloader("pretrain"))
        return [next(loader) for _ in range(2)]

    a, b, other = first(3), first(3), first(4)
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in x)
    assert not torch.equal(a[0]["input_ids"], other[0]["input_ids"])
    # a variant that changes no data setting (e.g. a model knob) sees exactly the same batches
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, first(3, max_text_len=96), strict=True) for k in x)


def _prompts(world, tokenizer, prompts: str) -> set[str]:
    """The decoded prompts of captioning examples in finetuning batches."""
    loader = iter(make_dm(world, tokenizer, batch_size=32, prompts=prompts, text_instructions=False, video=False,
                          vqa_weight=0.0).stage_dataloader("finetune"))
    found = set()
    for _ in range(3):
        batch = next(loader)
        for ids, labels in zip(batch["input_ids"], batch["labels"], strict=True):
            if (labels != IGNORE_INDEX).sum() > 6 and (labels == tokenizer.eos_token_id).sum() == 1:
                found.add(tokenizer.decode(ids[labels == IGNORE_INDEX], skip_special_tokens=True))
    return found


def test_fixed_prompts_use_only_base_prompts_and_diverse_many(world, tokenizer):
    base = {tokenizer.decode(tokenizer.encode(prompt_text(p)), skip_special_tokens=True)
            for task in ("caption_short", "caption_detailed") for p in BASE[task]}
    fixed, diverse = _prompts(world, tokenizer, "fixed"), _prompts(world, tokenizer, "diverse")
    assert fixed and fixed <= base
    assert len(diverse - base) >= 5


# ---- evaluation batches ----------------------------------------------------------------------------------------


def test_eval_batches_are_left_padded_prompts_in_order(world, tokenizer):
    batches = list(make_dm(world, tokenizer).eval_batches("openvqa_image", 128))
    assert [len(b["keys"]) for b in batches] == [128, 128, 46]
    assert [k for b in batches for k in b["keys"]] == [f"openvqa_image-{i:06d}" for i in range(302)]
    first = batches[0]
    assert set(first) == {"images", "frames_mask", "input_ids", "attention_mask", "keys", "split", "category",
                          "question", "answer", "pair_id", "probe"}
    assert first["images"].shape == (128, 1, 3, 32, 32) and first["frames_mask"].all()
    assert (first["attention_mask"][:, -1] == 1).all() and (first["attention_mask"][:, 0] == 0).any()
    assert first["split"][0] == "openvqa_image" and first["category"][0] == "OCR" and first["pair_id"][0] == ""
    decoded = tokenizer.decode(first["input_ids"][0], skip_special_tokens=True)
    assert decoded.endswith("assistant :") and "sign" in decoded
    mme = next(make_dm(world, tokenizer).eval_batches("mme", 4))
    assert mme["pair_id"][0] == mme["pair_id"][1] != "" and mme["answer"][:2] == ["yes", "no"]


def test_blind_eval_batch_has_blank_images(world, tokenizer):
    dm = make_dm(world, tokenizer)
    seen = next(dm.eval_batches("openvqa_video", 8))
    blind = next(dm.eval_batches("openvqa_video", 8, blind=True))
    assert seen["images"].shape == blind["images"].shape == (8, SMALL.num_frames, 3, 32, 32)
    assert seen["images"].abs().sum() > 0 and (blind["images"] == 0).all()
    assert torch.equal(seen["input_ids"], blind["input_ids"]) and seen["keys"] == blind["keys"]


# ---- shards from elsewhere, and broken ones --------------------------------------------------------------------


def test_outside_tool_tarfile_shards_load(tmp_path, world, tokenizer):
    shard = outside_shard(tmp_path / "cc3m-000000.tar", n=3)
    outside_shard(tmp_path / "cc3m-000001.tar", n=2, with_json=False)
    samples = list(iter_samples([str(shard)]))
    assert [s["__key__"] for s in samples] == ["000000000", "000000001", "000000002"]
    assert samples[1]["txt"] == "a blue square number 1" and samples[1]["images"][0].size == (48, 40)
    assert samples[1]["json"]["width"] == 48
    dm = make_dm(world, tokenizer, batch_size=32, shards=str(tmp_path / "cc3m-{000000..000001}.tar"))
    assert dm.mixture("pretrain")["shards"] > 0
    dm.cfg = replace(dm.cfg, sampling="balanced", noisy_pretraining=False)
    batch = next(iter(dm.stage_dataloader("pretrain")))
    answers = [tokenizer.decode(lab[lab != IGNORE_INDEX], skip_special_tokens=True) for lab in batch["labels"]]
    assert any(a.startswith("a blue square number") for a in answers)


def test_shard_pattern_matching_nothing_is_an_ablate_error(tmp_path, world, tokenizer):
    with pytest.raises(AblateError, match="matches no shard"):
        make_dm(world, tokenizer, shards=str(tmp_path / "nothing-*.tar"))
    with pytest.raises(AblateError, match="nowhere.tar"):
        make_dm(world, tokenizer, shards=str(tmp_path / "nowhere.tar"))


@pytest.mark.parametrize("damage", ["truncated", "bad_header", "bad_image"])
def test_corrupt_shard_raises_ablate_error_naming_shard_and_key(tmp_path, world, damage):
    source = Path(world.shards("captions")[0])
    shard = tmp_path / "captions-000000.tar"
    data = source.read_bytes()
    if damage == "truncated":  # cut at a header, which Python's tarfile would take for the end of the shard
        shard.write_bytes(data[: 512 * 20])
        match = rf"{shard} is truncated after sample 'captions-0000\d\d'"
    elif damage == "bad_header":  # a damaged header after the first sample
        with tarfile.open(source) as tar:
            offset = [m.offset for m in tar.getmembers()][3]  # the 2nd sample's first member
        shard.write_bytes(data[:offset] + b"garbage!" * 64 + data[offset + 512:])
        match = rf"{shard} has a damaged tar header after sample 'captions-000000'"
    else:
        with tarfile.open(source) as tar, tarfile.open(shard, "w") as out:
            for m in tar.getmembers():
                body = tar.extractfile(m).read()
                if m.name == "captions-000001.png":
                    body = body[:40]
                m.size = len(body)
                out.addfile(m, io.BytesIO(body))
        match = rf"{shard}: sample 'captions-000001' cannot be decoded"
    with pytest.raises(AblateError, match=match):
        list(iter_samples([str(shard)]))


def test_image_to_tensor_resizes_and_scales_to_unit_range():
    x = image_to_tensor(Image.new("RGB", (24, 24), (255, 0, 128)), 32)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0, 0], torch.tensor([1.0, -1.0, 128 / 255 * 2 - 1]), atol=1e-6)


def test_the_tokenizer_is_the_same_in_every_process(tmp_path):
    """The ids must be a function of the world alone: `tokenizers`' own trainer broke ties in hash-map order, so two
    builds of one world had different vocabularies and the same seed trained differently in two output folders."""
    import json
    import os
    import subprocess
    import sys

    script = ("import json, random\n"
              "from harness.data.scenes import detailed_caption, sample_scene\n"
              "from harness.data.tokenizer import train_tokenizer\n"
              "rng = random.Random(0)\n"
              "texts = [detailed_caption(sample_scene(rng)) for _ in range(300)]\n"
              "print(json.dumps(train_tokenizer(texts).get_vocab(), sort_keys=True))\n")
    vocabs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        vocabs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert vocabs[0] == vocabs[1] and len(vocabs[0]) > 100


def test_held_out_samples_never_train_and_validation_batches_are_fixed(world, tokenizer):
    """`data.holdout_percent` keeps a hashed share of every dataset out of training; the validation batches a
    sweep's pruner reads come from that share only, and are the same every time."""
    dm = make_dm(world, tokenizer, holdout_percent=20)
    trained = {s["__key__"] for s, _ in zip(dm.endless("vqa"), range(400), strict=False)}
    held = {s["__key__"] for s, _ in zip(dm.endless("vqa", held_out=True), range(100), strict=False)}
    assert trained and held and not trained & held
    everything = {s["__key__"] for s, _ in zip(make_dm(world, tokenizer).endless("vqa"), range(400), strict=False)}
    assert held <= everything  # without a holdout, the same samples train
    first, again = dm.validation_batches("finetune", batches=2), dm.validation_batches("finetune", batches=2)
    assert len(first) == 2 and all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(first, again, strict=True))
    assert all(dm.held_out(s) for s, _ in zip(dm.endless("captions", held_out=True), range(50), strict=False))
    with pytest.raises(AblateError, match="data.holdout_percent above 0"):
        make_dm(world, tokenizer).validation_batches("finetune")


def test_a_data_worker_cut_off_mid_hand_over_prints_no_traceback(monkeypatch, capsys):
    """Ctrl-C stops the trainer while a data worker's file-descriptor server is handing it a batch: the worker's
    `ConnectionResetError` used to reach stderr as a traceback (tests/test_interrupt.py saw it under load)."""
    import sys

    from harness.data.datamodule import quiet_hand_over

    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    quiet_hand_over(0)
    for error in (ConnectionResetError(104, "Connection reset by peer"), BrokenPipeError(), EOFError()):
        sys.excepthook(type(error), error, None)
    assert capsys.readouterr().err == ""
    sys.excepthook(ValueError, ValueError("a real error in the worker"), None)
    assert "a real error in the worker" in capsys.readouterr().err

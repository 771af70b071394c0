"""The data side: the generated world's shards and cache, the tokenizer, chat encoding and the datamodule."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from harness.config.schema import DataConfig
from harness.data import (
    IGNORE_INDEX,
    WorldDataModule,
    build_tokenizer,
    build_world,
    encode_example,
    image_to_tensor,
)
from harness.data.tokenizer import corpus
from harness.data.world import COLOURS
from harness.errors import AblateError

SMALL = DataConfig(num_train=60, num_eval=12, samples_per_shard=25, render_size=24)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(SMALL, tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def tokenizer(world):
    return build_tokenizer(world)


def make_dm(tokenizer, world, cfg=SMALL, seed=0, batch_size=8, train=None, eval_=None):
    train = world.train_shards if train is None else train
    eval_ = world.eval_shards if eval_ is None else eval_
    return WorldDataModule(cfg, tokenizer, train, eval_, image_size=32, batch_size=batch_size, seed=seed)


def test_world_is_deterministic(tmp_path):
    a = build_world(SMALL, tmp_path / "a")
    b = build_world(SMALL, tmp_path / "b")
    assert a.manifest == b.manifest and len(a.manifest["hash"]) == 12
    assert Path(a.train_shards[0]).read_bytes() == Path(b.train_shards[0]).read_bytes()


def test_second_build_reuses_the_cache(tmp_path):
    first = build_world(SMALL, tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in first.path.iterdir()}
    second = build_world(SMALL, tmp_path)
    assert second.path == first.path
    assert {p: p.stat().st_mtime_ns for p in second.path.iterdir()} == stamps


def test_folder_without_manifest_is_rebuilt(tmp_path):
    world = build_world(SMALL, tmp_path)
    good = Path(world.train_shards[0]).read_bytes()
    (world.path / "manifest.json").unlink()
    Path(world.train_shards[0]).write_bytes(b"half-written")
    rebuilt = build_world(SMALL, tmp_path)
    assert (rebuilt.path / "manifest.json").is_file()
    assert Path(rebuilt.train_shards[0]).read_bytes() == good


def test_world_builds_2000_samples_quickly(tmp_path):
    start = time.perf_counter()
    world = build_world(DataConfig(num_train=2000, num_eval=96), tmp_path)
    assert time.perf_counter() - start < 10
    assert world.manifest["counts"] == {"train": 2000, "eval": 96}


def test_shards_are_plain_tars_of_png_txt_json(world):
    assert [Path(s).name for s in world.train_shards] == [f"train-00000{i}.tar" for i in range(3)]
    with tarfile.open(world.train_shards[0]) as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile("train-000000.json").read())
        image = Image.open(io.BytesIO(tar.extractfile("train-000000.png").read()))
        caption = tar.extractfile("train-000000.txt").read().decode()
    assert len(names) == 3 * SMALL.samples_per_shard
    assert {n.rsplit(".", 1)[1] for n in names} == {"png", "txt", "json"}
    assert set(meta) == {"task", "question_fields", "answer", "caption", "colour", "shape"}
    assert caption == meta["caption"] and image.size == (SMALL.render_size, SMALL.render_size)
    assert world.manifest["tasks"]["train"] == {"color": 20, "shape": 20, "caption": 20}


def test_shard_written_with_plain_tarfile_loads(tmp_path, tokenizer, world):
    shard = tmp_path / "outside-000000.tar"
    with tarfile.open(shard, "w") as tar:
        for i, (colour, rgb) in enumerate([("red", (220, 30, 30)), ("blue", (30, 30, 220))]):
            png = io.BytesIO()
            Image.new("RGB", (40, 40), rgb).save(png, format="PNG")
            meta = {"task": "color", "question_fields": {"shape": "square"}, "answer": colour}
            members = {
                "png": png.getvalue(),
                "txt": f"a {colour} square".encode(),
                "json": json.dumps(meta).encode(),
            }
            for ext, data in members.items():
                info = tarfile.TarInfo(f"sample{i}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    dm = make_dm(tokenizer, world, train=[str(shard)], eval_=[str(shard)], batch_size=2)
    batch = next(dm.eval_batches(4))
    assert batch["keys"] == ["sample0", "sample1"] and batch["answers"] == ["red", "blue"]
    assert next(iter(dm.train_dataloader()))["images"].shape == (2, 3, 32, 32)


def test_labels_mask_the_prompt_and_keep_answer_and_eos(tokenizer):
    ex = encode_example(tokenizer, "What color is the shape?", "red", max_len=48)
    answer = tokenizer.encode(" red", add_special_tokens=False)
    n_prompt = len(ex["input_ids"]) - len(answer) - 1
    assert ex["input_ids"][0] == tokenizer.bos_token_id
    assert ex["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert ex["labels"][n_prompt:] == [*answer, tokenizer.eos_token_id] == ex["input_ids"][n_prompt:]
    assert len(encode_example(tokenizer, "What color is the shape?", "red", max_len=5)["labels"]) == 5


def test_train_batches_are_right_padded(tokenizer, world):
    batch = next(iter(make_dm(tokenizer, world).train_dataloader()))
    assert batch["images"].shape == (8, 3, 32, 32) and batch["images"].dtype == torch.float32
    assert batch["input_ids"].dtype == batch["labels"].dtype == batch["attention_mask"].dtype == torch.long
    pads = batch["attention_mask"] == 0
    assert pads.any() and not pads[:, 0].any()
    assert (batch["input_ids"][pads] == tokenizer.pad_token_id).all()
    assert (batch["labels"][pads] == IGNORE_INDEX).all()


def test_eval_batches_are_left_padded_prompts_in_order(tokenizer, world):
    batches = list(make_dm(tokenizer, world).eval_batches(5))
    assert [len(b["keys"]) for b in batches] == [5, 5, 2]
    assert [k for b in batches for k in b["keys"]] == [f"eval-{i:06d}" for i in range(12)]
    first = batches[0]
    assert (first["attention_mask"][:, -1] == 1).all() and (first["attention_mask"][:, 0] == 0).any()
    assert set(first) == {"images", "input_ids", "attention_mask", "keys", "tasks", "questions", "answers"}
    prompt = tokenizer.decode(first["input_ids"][0], skip_special_tokens=True)
    assert prompt == f"user : {first['questions'][0].lower()[:-1]} {first['questions'][0][-1]} assistant :"


def _colour_questions(tokenizer, world, prompts: str) -> set[str]:
    """The distinct prompts of colour-task training examples (the answer is one colour word)."""
    cfg = DataConfig(**{**vars(SMALL), "prompts": prompts})
    loader = iter(make_dm(tokenizer, world, cfg=cfg).train_dataloader())
    found = set()
    for _ in range(8):
        batch = next(loader)
        for ids, labels in zip(batch["input_ids"], batch["labels"], strict=True):
            answer = tokenizer.decode(labels[labels != IGNORE_INDEX], skip_special_tokens=True)
            if answer in COLOURS:
                found.add(tokenizer.decode(ids[labels == IGNORE_INDEX], skip_special_tokens=True))
    return found


def test_fixed_prompts_use_one_phrasing_diverse_many(tokenizer, world):
    assert len(_colour_questions(tokenizer, world, "fixed")) == 1
    assert len(_colour_questions(tokenizer, world, "diverse")) > 1


def test_same_seed_gives_identical_batches(tokenizer, world):
    def first(seed):
        return next(iter(make_dm(tokenizer, world, seed=seed).train_dataloader()))

    a, b, other = first(3), first(3), first(4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["images"], other["images"])


@pytest.mark.parametrize("damage", ["truncated", "bad_header"])
def test_corrupt_shard_raises_ablate_error_naming_it(tmp_path, tokenizer, world, damage):
    shard = tmp_path / "train-000000.tar"
    data = Path(world.train_shards[0]).read_bytes()
    if damage == "truncated":  # cut at a header, which Python's tarfile would take for the end of the shard
        data = data[: 512 * 20]
    else:
        data = b"garbage!" * 64 + data[512:]
    shard.write_bytes(data)
    with pytest.raises(AblateError, match=str(shard)):
        list(make_dm(tokenizer, world, train=[str(shard)], eval_=[str(shard)]).eval_batches(8))


def test_missing_shard_raises_ablate_error_naming_it(tmp_path, tokenizer, world):
    with pytest.raises(AblateError, match="nowhere.tar"):
        make_dm(tokenizer, world, train=[str(tmp_path / "nowhere.tar")])


def test_tokenizer_roundtrips_answers_with_a_small_vocab(tokenizer, world):
    ids = tokenizer.encode(" an orange square", add_special_tokens=False)
    assert tokenizer.decode(ids) == "an orange square"
    assert len(tokenizer) < 300
    assert not any(tokenizer.unk_token_id in tokenizer.encode(t) for t in corpus())
    assert (world.path / "tokenizer" / "tokenizer.json").is_file()


def test_image_to_tensor_resizes_and_scales_to_unit_range():
    x = image_to_tensor(Image.new("RGB", (24, 24), (255, 0, 128)), 32)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0, 0], torch.tensor([1.0, -1.0, 128 / 255 * 2 - 1]), atol=1e-6)

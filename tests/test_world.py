"""The miniature world: deterministic cached generation, its contents, the benchmark, phrasings and tokenizer."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import tarfile
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from harness.config.schema import WorldConfig
from harness.data import (
    BASE,
    FORMAT_INSTRUCTIONS,
    HELD_OUT,
    NOISE_TOKENS,
    OPENVQA_IMAGE,
    OPENVQA_VIDEO,
    POOL,
    build_tokenizer,
    build_world,
    choose_prompt,
    iter_samples,
    world_hash,
)
from harness.data.scenes import MME_SUBTASKS
from harness.data.tokenizer import fixed_texts
from harness.data.world import _bench_plan, with_splits
from harness.errors import AblateError

SMALL = WorldConfig(num_images=48, num_noisy=24, num_videos=16, num_text=32, samples_per_shard=16)
CLEAN = ("captions", "vqa", "caption", "place", "dialogue", "text", "text_instructions", "video_qa", "video_caption")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    # one cache for the whole session: test_data.py reuses the same build
    return build_world(SMALL, tmp_path_factory.getbasetemp() / "world-cache")


def _texts(sample: dict) -> list[str]:
    meta = sample["json"]
    out = [sample["txt"], *(v for k, v in meta.items() if isinstance(v, str) and k not in ("dataset", "key"))]
    return out + [t for turn in meta.get("turns", []) for t in turn]


def test_same_config_gives_the_same_world(tmp_path, world):
    again = build_world(SMALL, tmp_path)
    assert again.manifest["hash"] == world.manifest["hash"] == world_hash(SMALL)
    assert len(world.manifest["hash"]) == 12
    assert {k: v for k, v in again.manifest.items() if k != "build_seconds"} == \
        {k: v for k, v in world.manifest.items() if k != "build_seconds"}
    for name in ("vqa", "video_qa", "openvqa_image", "mme"):
        assert Path(again.shards(name)[0]).read_bytes() == Path(world.shards(name)[0]).read_bytes()
    assert world_hash(replace(SMALL, seed=1)) != world_hash(SMALL)


def test_a_pool_of_workers_writes_the_same_bytes(tmp_path, world, monkeypatch):
    monkeypatch.setattr("harness.data.world.PARALLEL_MIN", 0)  # SMALL is built in-process; force the pool
    monkeypatch.setattr("harness.data.world.CHUNK", 20)
    pooled = build_world(SMALL, tmp_path)
    for name in world.datasets:
        assert [Path(s).read_bytes() for s in pooled.shards(name)] == [Path(s).read_bytes() for s in world.shards(name)]


def test_second_build_reuses_the_cache(world):
    stamps = {p: p.stat().st_mtime_ns for p in world.path.rglob("*")}
    again = build_world(SMALL, world.path.parent.parent)
    assert again.path == world.path
    assert {p: p.stat().st_mtime_ns for p in again.path.rglob("*")} == stamps


def test_folder_without_manifest_is_rebuilt(tmp_path):
    cfg = replace(SMALL, num_images=16, num_noisy=8, num_videos=8, num_text=8)
    first = build_world(cfg, tmp_path)
    good = Path(first.shards("vqa")[0]).read_bytes()
    (first.path / "manifest.json").unlink()
    Path(first.shards("vqa")[0]).write_bytes(b"half-written")
    rebuilt = build_world(cfg, tmp_path)
    assert (rebuilt.path / "manifest.json").is_file()
    assert Path(rebuilt.shards("vqa")[0]).read_bytes() == good


def test_manifest_counts_every_dataset(world):
    counts = world.manifest["counts"]
    assert counts["captions"] == counts["vqa"] == SMALL.num_images
    assert counts["noisy"] == SMALL.num_noisy
    assert counts["video_qa"] == counts["video_caption"] == SMALL.num_videos
    assert counts["text"] == counts["text_instructions"] == SMALL.num_text
    assert counts["caption"] + counts["place"] == SMALL.num_images
    assert set(world.datasets) == {*CLEAN, "noisy", "openvqa_image", "openvqa_video", "mme", "probes"}
    assert world.manifest["datasets"]["vqa"]["categories"] == dict.fromkeys(sorted(OPENVQA_IMAGE), 6)


def test_benchmark_has_the_papers_category_counts(world):
    for split, expected in (("openvqa_image", OPENVQA_IMAGE), ("openvqa_video", OPENVQA_VIDEO)):
        assert world.manifest["datasets"][split]["categories"] == dict(sorted(expected.items()))
        assert Counter(s["json"]["category"] for s in iter_samples(world.shards(split))) == Counter(expected)
    assert sum(OPENVQA_IMAGE.values()) == 302 and sum(OPENVQA_VIDEO.values()) == 148


def test_benchmark_scale_10_plans_a_10x_image_split():
    plan = _bench_plan(10)
    tenx = Counter(item[3] for item in plan if item[1] == "openvqa_image_10x")
    assert tenx == Counter({c: 10 * n for c, n in OPENVQA_IMAGE.items()})
    assert not any(item[1] == "openvqa_image_10x" for item in _bench_plan(1))


def test_the_10x_video_split_draws_new_items_like_the_148(world):
    """`openvqa_video_10x` brings its own items: ten times the video split's categories in its proportions, with
    held-out phrasings and keys of their own, the same for the same world config."""
    from harness.data.benchmark import openvqa_video_10x_items
    from harness.evaluation.splits import get_split

    config = WorldConfig(**{k: world.manifest["generator"][k] for k in WorldConfig.__dataclass_fields__})
    items = openvqa_video_10x_items(config)
    metas = [meta for _, meta in items]
    assert Counter(m["category"] for m in metas) == Counter({c: 10 * n for c, n in OPENVQA_VIDEO.items()})
    assert {m["task"] for m in metas} == {"video_qa"} and len({m["key"] for m in metas}) == 1480
    own = [s["json"] for s in iter_samples(world.shards("openvqa_video"))]
    assert not {m["key"] for m in metas} & {m["key"] for m in own}
    pairs = [(m["question"], m["answer"]) for m in metas[:len(own)]]
    assert sum(p == (m["question"], m["answer"]) for p, m in zip(pairs, own, strict=True)) < len(own) / 2  # new draws
    assert metas[:5] == [meta for _, meta in openvqa_video_10x_items(config)[:5]]
    split = get_split("openvqa_video_10x")
    assert split.items is not None and split.kind == "openvqa"


def test_mme_has_one_yes_and_one_no_question_per_image(world):
    pairs = defaultdict(list)
    for s in iter_samples(world.shards("mme")):
        pairs[s["json"]["pair_id"]].append(s)
    assert len(pairs) == 20 * len(MME_SUBTASKS)
    assert Counter(p.split("-")[1] for p in pairs) == dict.fromkeys(MME_SUBTASKS, 20)
    for items in pairs.values():
        assert sorted(s["json"]["answer"] for s in items) == ["no", "yes"]
        assert items[0]["images"][0].tobytes() == items[1]["images"][0].tobytes()
        assert items[0]["json"]["question"] != items[1]["json"]["question"]


def test_probes_carry_their_format_instruction(world):
    probes = list(iter_samples(world.shards("probes")))
    assert Counter(s["json"]["probe"] for s in probes) == dict.fromkeys(FORMAT_INSTRUCTIONS, 25)
    for s in probes:
        assert s["json"]["prompt"].endswith(FORMAT_INSTRUCTIONS[s["json"]["probe"]])
        if s["json"]["probe"] == "yes_no":
            assert s["json"]["answer"] in ("yes", "no")


def test_image_dependent_answers_are_balanced(world):
    video_action = [s["json"]["answer"] for s in iter_samples(world.shards("openvqa_video"))
                    if s["json"]["category"] == "Action"]
    assert 0.35 < video_action.count("yes") / len(video_action) < 0.65
    image = defaultdict(Counter)
    for s in iter_samples(world.shards("openvqa_image")):
        image[s["json"]["category"]][s["json"]["answer"]] += 1
    for category in ("OCR", "Place", "Color", "Count", "Action"):  # no answer dominates
        assert max(image[category].values()) / sum(image[category].values()) < 0.5


def test_benchmark_images_are_not_training_images(world):
    def digests(names):
        return {hashlib.sha256(s["images"][0].tobytes()).hexdigest() for n in names for s in iter_samples(
            world.shards(n)) if s["images"]}

    assert not digests(["openvqa_image", "mme", "probes"]) & digests(["captions", "noisy"])


def test_images_are_stored_at_render_size_and_videos_move(world):
    with tarfile.open(world.shards("video_qa")[0]) as tar:
        names = tar.getnames()
        assert {n.split(".", 1)[1] for n in names} == {f"frame{i}.png" for i in range(SMALL.num_frames)} | {"json"}
    video = next(iter_samples(world.shards("video_qa")))
    assert len(video["images"]) == SMALL.num_frames
    assert video["images"][0].size == (SMALL.render_size, SMALL.render_size)
    assert video["images"][0].tobytes() != video["images"][-1].tobytes()
    text = next(iter_samples(world.shards("text")))
    assert text["images"] == [] and text["txt"] == text["json"]["text"]


def test_every_json_names_its_dataset_and_task(world):
    for name in world.datasets:
        for s in itertools.islice(iter_samples(world.shards(name)), 3):
            assert s["json"]["dataset"] == name and s["json"]["task"]


def test_each_task_has_base_prompts_and_a_diverse_pool():
    for task, base in BASE.items():
        assert 2 <= len(base) <= 3 and len(set(POOL[task])) >= 15 and set(base) <= set(POOL[task])


def test_held_out_phrasings_never_appear_in_training():
    training = {t for pool in POOL.values() for t in pool}
    assert not training & {t for pool in HELD_OUT.values() for t in pool}
    question = "What colour is the star?"
    seen = {choose_prompt(task, "diverse", seed, f"k{i}", question)
            for task in POOL for seed in range(3) for i in range(200)}
    for templates in HELD_OUT.values():
        for t in templates:
            assert t.format(question=question) not in seen
    for instruction in FORMAT_INSTRUCTIONS.values():  # image-task prompts never teach the eval instructions
        assert not any(instruction in t for task, pool in POOL.items() if task != "text_instruction" for t in pool)


def test_fixed_prompts_come_from_the_base_prompts_only():
    fixed = {choose_prompt("caption_short", "fixed", 0, f"k{i}") for i in range(100)}
    diverse = {choose_prompt("caption_short", "diverse", 0, f"k{i}") for i in range(100)}
    assert fixed == set(BASE["caption_short"]) and len(diverse) > 10
    assert choose_prompt("vqa", "diverse", 3, "key") == choose_prompt("vqa", "diverse", 3, "key")


def test_noisy_corpus_has_junk_tokens_and_clean_text_none(world):
    junk = set(NOISE_TOKENS)
    for s in iter_samples(world.shards("noisy")):
        assert junk & set(s["txt"].split())
    for name in [*CLEAN, "openvqa_image", "probes"]:
        for s in iter_samples(world.shards(name)):
            words = {w.strip(".,?:!") for t in _texts(s) for w in t.lower().split()}
            assert not words & junk, (name, s["__key__"])
    assert not junk & {w.strip(".,?:!").lower() for t in fixed_texts() if t != " ".join(NOISE_TOKENS)
                       for w in t.split()}


def test_tokenizer_covers_the_corpus(world):
    tok = build_tokenizer(world)
    texts = list(fixed_texts())
    for name in world.datasets:
        texts += [t for s in itertools.islice(iter_samples(world.shards(name)), 40) for t in _texts(s) if t]
    assert all(tok.unk_token_id not in tok.encode(t) for t in texts)
    assert tok.decode(tok.encode(" a sign says K7B.", add_special_tokens=False)) == "a sign says k7b."
    assert {tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token} == {"<pad>", "<s>", "</s>", "<unk>"}
    assert (world.path / "tokenizer" / "tokenizer_config.json").is_file()


def test_world_conveniences_for_the_zoo(world):
    pairs = world.caption_pairs(limit=5)
    assert len(pairs) == 5 and isinstance(pairs[0][0], Image.Image) and pairs[0][1].endswith(".")
    assert len(world.texts()) == SMALL.num_text
    dialogues = world.instruction_dialogues()
    assert len(dialogues) == SMALL.num_text and all(len(d) == 1 and len(d[0]) == 2 for d in dialogues)


def test_shards_are_plain_tars_in_the_laion_layout(world):
    with tarfile.open(world.shards("captions")[0]) as tar:
        meta = json.loads(tar.extractfile("captions-000000.json").read())
        image = Image.open(io.BytesIO(tar.extractfile("captions-000000.png").read()))
        caption = tar.extractfile("captions-000000.txt").read().decode()
        assert all(m.mtime == 0 for m in tar.getmembers())
    assert caption == meta["answer"] and image.size == (SMALL.render_size,) * 2


def _count_items(world):
    """A split's items as a package would write them: 3 counting questions per benchmark scale."""
    import random

    from harness.data.benchmark import item_json
    from harness.data.scenes import image_item

    out = []
    for i in range(3 * world.benchmark_scale):
        scene, q, a = image_item(random.Random(f"{world.seed}/counting/{i}"), "Count")
        out.append((scene, item_json("counting", "vqa", f"counting-{i}", "Count", q, q, a)))
    return out


def test_a_split_with_its_own_items_is_written_into_the_world_once_per_version(world):
    from harness.evaluation.splits import Split

    split = Split("counting", "openvqa", "openvqa", "Counting", items=_count_items)
    before = dict(world.manifest["datasets"])
    extended = with_splits(world, [split, Split("openvqa_image", "openvqa", "openvqa", "built in")])
    assert world.manifest["datasets"] == before  # the world itself is not changed
    assert extended.size("counting") == 3 and extended.manifest["datasets"]["counting"]["role"] == "eval"
    samples = list(iter_samples(extended.shards("counting")))
    assert [s["json"]["key"] for s in samples] == ["counting-0", "counting-1", "counting-2"]
    assert samples[0]["images"][0].size == (SMALL.render_size, SMALL.render_size)
    assert [s["json"]["answer"] for s in samples] == [meta["answer"] for _, meta in _count_items(SMALL)]
    written = (world.path / "splits" / "counting-v1" / "manifest.json").stat().st_mtime_ns
    with_splits(world, [split])
    assert (world.path / "splits" / "counting-v1" / "manifest.json").stat().st_mtime_ns == written  # not rewritten
    assert with_splits(world, [Split("counting", "openvqa", "openvqa", "Counting", items=_count_items,
                                     items_version=2)]).shards("counting")[0].startswith(str(world.path / "splits" /
                                                                                             "counting-v2"))


@pytest.mark.parametrize(("items", "message"), [
    (lambda world: [({}, {"key": "a", "task": "vqa", "category": "Count", "question": "q?"})],
     "split 'odd' .*item 0 has no answer; build each item's json with harness.data.benchmark.item_json"),
    (lambda world: _count_items(world)[:1] * 2, "item key 'counting-0' is used twice"),
    (lambda world: [], "split 'odd' .* made no items"),
])
def test_a_split_whose_items_are_wrong_says_what_is_wrong_and_writes_nothing(world, items, message):
    from harness.evaluation.splits import Split

    with pytest.raises(AblateError, match=message):
        with_splits(world, [Split("odd", "openvqa", "openvqa", "Odd", items=items)])
    assert not (world.path / "splits" / "odd-v1").exists()
    assert not list((world.path / "splits").glob(".tmp-*"))  # nothing half-written is left behind


def test_a_split_folder_left_without_its_manifest_is_written_again(world):
    from harness.evaluation.splits import Split

    stale = world.path / "splits" / "redo-v1"
    stale.mkdir(parents=True)
    (stale / "redo-000000.tar").write_bytes(b"half a shard")
    extended = with_splits(world, [Split("redo", "openvqa", "openvqa", "Redo", items=_count_items)])
    assert extended.size("redo") == 3 and len(list(iter_samples(extended.shards("redo")))) == 3


def test_a_split_named_like_a_world_dataset_is_refused(world):
    from harness.evaluation.splits import Split

    with pytest.raises(AblateError, match="split 'vqa' brings its own items but the world already has a dataset"):
        with_splits(world, [Split("vqa", "openvqa", "openvqa", "VQA", items=_count_items)])

"""The miniature world: every dataset of docs/contracts.md generated from one seed and cached as webdataset shards.

`build_world(cfg, cache_root)` writes `cache_root/world/<12-hex hash of cfg + GENERATOR_VERSION>/` (built in a
temp folder and renamed into place; `manifest.json` is written last and marks it complete) with one folder of
shards per dataset and the world's tokenizer. Every sample draws from its own `random.Random(f"{seed}/{stream}/
{i}")`, so the output does not depend on the order or the process in which samples are made: the work is split
into chunks for a pool of worker processes and written back in order. Images are rendered at
`cfg.render_size` (the high resolution); the datamodule downsamples them to the model's resolution.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import multiprocessing
import os
import random
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image

from harness.config.schema import WorldConfig
from harness.data import benchmark as bench
from harness.data.render import render_scene, render_video
from harness.data.scenes import (
    IMAGE_CATEGORIES,
    MME_SUBTASKS,
    detailed_caption,
    image_item,
    scene_questions,
    short_caption,
    video_caption,
    video_item,
)
from harness.data.shards import ShardWriter, iter_samples
from harness.data.textgen import noisy_alt_text, text_document, text_instruction
from harness.errors import AblateError, did_you_mean
from harness.progress import ProgressLine

# Bump whenever rendering, the sample layout or any generator changes: it is part of the cache hash.
GENERATOR_VERSION = 6  # 4: 1 px glyphs, signs of 1-2 of 16 characters, bold local action cues, scene QA,
#                          follow-up questions in vqa samples; 5: sign texts spelled one character per token;
#                          6: the tokenizer's vocabulary is the same in every process (whole words, characters)

PRETRAIN_DATASETS = ("captions", "noisy", "text")
FINETUNE_DATASETS = ("vqa", "caption", "place", "dialogue", "text_instructions", "video_qa", "video_caption")
EVAL_DATASETS = ("openvqa_image", "openvqa_video", "openvqa_image_10x", "mme", "probes")
CHUNK = 250  # samples per pool job
PARALLEL_MIN = 1500  # below this many samples a pool costs more than it saves


@dataclass(frozen=True)
class World:
    """A built world: its cache folder and manifest; datasets are looked up by name."""

    path: Path
    manifest: dict

    @property
    def hash(self) -> str:
        return self.manifest["hash"]

    @property
    def datasets(self) -> list[str]:
        """Names of the datasets this world holds."""
        return list(self.manifest["datasets"])

    def _entry(self, name: str) -> dict:
        if name not in self.manifest["datasets"]:
            raise AblateError(f"the world has no dataset '{name}'{did_you_mean(name, self.datasets)}; "
                              f"it has {', '.join(self.datasets)}{larger_benchmark_hint(name)}")
        return self.manifest["datasets"][name]

    def shards(self, name: str) -> list[str]:
        """Absolute shard paths of a dataset."""
        return [str(self.path / rel) for rel in self._entry(name)["shards"]]

    def size(self, name: str) -> int:
        """Number of samples in a dataset."""
        return self._entry(name)["count"]

    def caption_pairs(self, limit: int | None = None, targets: bool = False) -> list[tuple]:
        """(image, clean short caption) pairs from `captions` (to pretrain the zoo's ViTs); with `targets`, triples
        that add the scene's dense targets (`scenes.scene_targets`: what is in each grid cell, the place, the
        sign's text) for the location-aware objective."""
        from harness.data.scenes import scene_targets

        out = []
        for s in iter_samples(self.shards("captions")):
            if limit is not None and len(out) >= limit:
                break
            pair = (s["images"][0], s["txt"])
            out.append((*pair, scene_targets(s["json"]["scene"])) if targets else pair)
        return out

    def texts(self) -> list[str]:
        """The plain text documents (LM pretraining)."""
        return [s["txt"] for s in iter_samples(self.shards("text"))]

    def instruction_dialogues(self) -> list[list[tuple[str, str]]]:
        """Text-only instructions as one-turn dialogues [(question, answer)] (instruction-tuning the zoo's LM)."""
        return [[(s["json"]["question"], s["json"]["answer"])] for s in iter_samples(self.shards("text_instructions"))]


def generator_config(cfg: WorldConfig) -> dict:
    """Everything that determines the world's bytes (and so its cache hash)."""
    return {**asdict(cfg), "generator_version": GENERATOR_VERSION}


def larger_benchmark_hint(split: str) -> str:
    """How to get a split that only a world built at a larger benchmark scale has ('' for any other split)."""
    if not split.endswith("_10x"):
        return ""
    return (" (train with world.benchmark_scale=10, or score a trained run on it with `ablate eval RUN "
            "--benchmark-scale 10`)")


def world_hash(cfg: WorldConfig) -> str:
    """12-hex content hash of the generator config."""
    return hashlib.sha256(json.dumps(generator_config(cfg), sort_keys=True).encode()).hexdigest()[:12]


def build_world(cfg: WorldConfig, cache_root: Path) -> World:
    """The world for `cfg`, generated under `cache_root/world/<hash>` unless a complete one is already there."""
    digest = world_hash(cfg)
    final = Path(cache_root) / "world" / digest
    if not (final / "manifest.json").is_file():
        _build_in_place(final, lambda folder: _write_world(cfg, digest, folder))
    return World(path=final, manifest=json.loads((final / "manifest.json").read_text()))


def _build_in_place(final: Path, write: Callable[[Path], None]) -> None:
    """`write(folder)` into a fresh temp folder beside `final`, then rename it into place. Readers trust a folder
    only once its `manifest.json` exists (written last): one without it is an interrupted build and is replaced;
    one that a concurrent process completed meanwhile is kept."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write(tmp)
        if final.exists() and not (final / "manifest.json").is_file():
            shutil.rmtree(final)
        try:
            os.rename(tmp, final)
        except OSError:  # a concurrent process finished the same folder first
            if not (final / "manifest.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def with_splits(world: World, splits) -> World:
    """The world, plus every split of `splits` that comes with its own items (a plugin's `Split.items`) and that it
    does not hold yet, written beside its datasets in `<world>/splits/<name>-v<items_version>/`.

    A split's items are made from the world's config (its seed, benchmark scale, frames) and rendered like the
    world's own benchmark; it is written once (in a temp folder renamed into place, so concurrent workers never
    read half of one) and only when a run is evaluated on it, so adding one to `eval.splits` neither rebuilds the
    world nor retrains anything.
    The world's own splits have no `items` and pass through."""
    datasets = dict(world.manifest["datasets"])
    for split in splits:
        if getattr(split, "items", None) is None:
            continue
        if split.name in world.manifest["datasets"]:
            raise AblateError(f"split '{split.name}' brings its own items but the world already has a dataset of "
                              f"that name; give the split another name (the world has {', '.join(world.datasets)})")
        rel = f"splits/{split.name}-v{split.items_version}"
        if not (world.path / rel / "manifest.json").is_file():
            _build_in_place(world.path / rel, lambda folder, split=split: _write_split(world, split, folder))
        entry = json.loads((world.path / rel / "manifest.json").read_text())
        datasets[split.name] = {**entry, "shards": [f"{rel}/{shard}" for shard in entry["shards"]]}
    return World(world.path, {**world.manifest, "datasets": datasets})


SPLIT_ITEM_FIELDS = ("key", "task", "category", "question", "answer")  # what every item's json must say


def _write_split(world: World, split, folder: Path) -> None:
    """Render and write one split's items (`split.items(world config)`) into `folder`, manifest last."""
    gen = world.manifest["generator"]
    config = WorldConfig(**{f.name: gen[f.name] for f in fields(WorldConfig)})
    where = f"split '{split.name}' (items_version {split.items_version})"
    writer = ShardWriter(folder, split.name, gen["samples_per_shard"])
    keys, tasks, categories = set(), Counter(), Counter()
    for i, (visual, meta) in enumerate(split.items(config)):
        missing = [f for f in SPLIT_ITEM_FIELDS if not isinstance(meta.get(f), str)]
        if missing:
            raise AblateError(f"{where}: item {i} has no {', '.join(missing)}; build each item's json with "
                              "harness.data.benchmark.item_json")
        if meta["key"] in keys:
            raise AblateError(f"{where}: item key '{meta['key']}' is used twice; every item needs its own key")
        keys.add(meta["key"])
        video = meta["task"] in ("video_qa", "video_caption")
        frames = render_video(visual, gen["render_size"]) if video else [render_scene(visual, gen["render_size"])]
        _, sample = _sample(split.name, i, {**meta, "dataset": split.name}, [_png(f) for f in frames])
        sample.pop("__meta__")
        writer.write(sample)
        tasks[meta["task"]] += 1
        categories[meta["category"]] += 1
    writer.close()
    if not keys:
        raise AblateError(f"{where} made no items")
    manifest = {"count": writer.count, "shards": writer.names, "tasks": dict(sorted(tasks.items())),
                "categories": dict(sorted(categories.items())), "role": "eval", "items_version": split.items_version}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))


# ---- sample makers: (cfg, i) -> [(dataset, sample)], sample = {"__key__", ext: bytes, "__meta__": json dict} -----


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)  # fast; the bytes are still deterministic
    return buf.getvalue()


def _sample(dataset: str, i: int, meta: dict, images: list[bytes] | None = None, txt: str | None = None) -> tuple:
    key = meta.get("key") or f"{dataset}-{i:06d}"
    sample = {"__key__": key, "__meta__": {"dataset": dataset, **meta}}
    if images and len(images) == 1 and meta.get("task") not in ("video_qa", "video_caption"):
        sample["png"] = images[0]
    else:
        for t, frame in enumerate(images or []):
            sample[f"frame{t}.png"] = frame
    if txt is not None:
        sample["txt"] = txt.encode()
    sample["json"] = json.dumps(sample["__meta__"], sort_keys=True).encode()
    return dataset, sample


VQA_MORE = (1, 3)  # follow-up questions about the same image in a `vqa` sample (min, max)


def follow_ups(rng: random.Random, scene: dict, category: str, question: str,
               bounds: tuple[int, int] = VQA_MORE) -> list[list[str]]:
    """`bounds` (min, max) follow-up [question, answer] pairs about `scene`, of categories other than the first
    question's and never that question again (as many as the scene allows)."""
    return [[q2, a2] for c2, q2, a2 in scene_questions(rng, scene, rng.randint(*bounds) + 1)
            if c2 != category and q2 != question][:bounds[1]]


def make_image(cfg: WorldConfig, i: int) -> list[tuple]:
    """Image i of the training stream: a `captions` pair and a `vqa` sample, plus every second image a `caption`
    or `place` sample and every third a `dialogue`.

    A `vqa` sample asks one question of its category (categories evenly over images) and 1-3 follow-up questions
    of other categories about the same image (`more`), trained as turns of one conversation as LLaVA-style
    instruction data is: several supervised answers per image for little more compute than one.
    """
    rng = random.Random(f"{cfg.seed}/images/{i}")
    category = IMAGE_CATEGORIES[i % len(IMAGE_CATEGORIES)]  # categories evenly
    scene, q, a = image_item(rng, category)
    png = [_png(render_scene(scene, cfg.render_size))]
    short, detailed = short_caption(scene), detailed_caption(scene)
    more = follow_ups(rng, scene, category, q)
    out = [
        _sample("captions", i, {"task": "caption_short", "answer": short, "detailed": detailed, "scene": scene},
                png, short),
        _sample("vqa", i, {"task": "vqa", "category": category, "question": q, "answer": a, "more": more}, png),
    ]
    if i % 2 == 0:
        task = rng.choice(["caption_short", "caption_detailed"])
        out.append(_sample("caption", i, {"task": task, "answer": short if task == "caption_short" else detailed},
                           png))
    else:
        out.append(_sample("place", i, {"task": "place", "answer": scene["place"]}, png))
    if i % 3 == 0:
        turns = [[q, a] for _, q, a in scene_questions(rng, scene, rng.randint(2, 3))]
        if rng.random() < 0.3:
            turns.insert(0, ["Describe the image briefly.", short])
        out.append(_sample("dialogue", i, {"task": "dialogue", "turns": turns}, png))
    return out


def make_noisy(cfg: WorldConfig, i: int) -> list[tuple]:
    """Noisy alt-text pair i (its own scene, so it adds images as well as noise, like web data)."""
    from harness.data.scenes import sample_scene

    rng = random.Random(f"{cfg.seed}/noisy/{i}")
    scene = sample_scene(rng)
    alt = noisy_alt_text(rng, scene)
    return [_sample("noisy", i, {"task": "caption_short", "answer": alt}, [_png(render_scene(scene, cfg.render_size))],
                    alt)]


def make_video(cfg: WorldConfig, i: int) -> list[tuple]:
    """Video i: a `video_qa` question (70% yes/no motion questions) and a `video_caption`."""
    rng = random.Random(f"{cfg.seed}/videos/{i}")
    category = "Action" if rng.random() < 0.7 else "Others"
    video, q, a = video_item(rng, category, cfg.num_frames)
    frames = [_png(f) for f in render_video(video, cfg.render_size)]
    return [_sample("video_qa", i, {"task": "video_qa", "category": category, "question": q, "answer": a}, frames),
            _sample("video_caption", i, {"task": "video_caption", "answer": video_caption(video)}, frames)]


def make_text(cfg: WorldConfig, i: int) -> list[tuple]:
    """Text document i and text-only instruction i (no image)."""
    doc = text_document(random.Random(f"{cfg.seed}/text/{i}"))
    q, a = text_instruction(random.Random(f"{cfg.seed}/text_instructions/{i}"))
    return [_sample("text", i, {"task": "text", "text": doc}, txt=doc),
            _sample("text_instructions", i, {"task": "text_instruction", "question": q, "answer": a})]


@functools.lru_cache(maxsize=4)
def _bench_plan(scale: int) -> tuple[tuple, ...]:
    """(kind, args) of every benchmark item, in writing order."""
    plan = [("openvqa_image", "openvqa_image", i, c) for i, c in enumerate(bench.category_plan(bench.OPENVQA_IMAGE))]
    if scale >= 10:
        plan += [("openvqa_image", "openvqa_image_10x", i, c)
                 for i, c in enumerate(bench.category_plan(bench.OPENVQA_IMAGE, 10))]
    plan += [("openvqa_video", "openvqa_video", i, c) for i, c in enumerate(bench.category_plan(bench.OPENVQA_VIDEO))]
    plan += [("mme", s, j) for s in MME_SUBTASKS for j in range(bench.MME_IMAGES * scale)]
    plan += [("probes", p, j) for p in bench.PROBES for j in range(bench.PROBE_ITEMS * scale)]
    return tuple(plan)


def make_bench(cfg: WorldConfig, i: int) -> list[tuple]:
    """Benchmark item i of `_bench_plan` (its own seed stream: `bench/...`)."""
    kind, *args = _bench_plan(cfg.benchmark_scale)[i]
    size = cfg.render_size
    if kind == "openvqa_image":
        scene, meta = bench.openvqa_image_item(cfg.seed, *args, cfg.num_frames)
        return [_sample(args[0], i, meta, [_png(render_scene(scene, size))])]
    if kind == "openvqa_video":
        video, meta = bench.openvqa_video_item(cfg.seed, *args, cfg.num_frames)
        return [_sample(args[0], i, meta, [_png(f) for f in render_video(video, size)])]
    if kind == "mme":
        scene, metas = bench.mme_items(cfg.seed, *args)
        png = [_png(render_scene(scene, size))]
        return [_sample("mme", i, m, png) for m in metas]
    scene, meta = bench.probe_item(cfg.seed, *args)
    return [_sample("probes", i, meta, [_png(render_scene(scene, size))])]


def _streams(cfg: WorldConfig) -> list[tuple[str, int]]:
    return [("make_image", cfg.num_images), ("make_noisy", cfg.num_noisy), ("make_video", cfg.num_videos),
            ("make_text", cfg.num_text), ("make_bench", len(_bench_plan(cfg.benchmark_scale)))]


def _run_chunk(job: tuple) -> list[tuple]:
    """Pool job: samples start..stop of one stream."""
    maker, cfg, start, stop = job
    fn = globals()[maker]
    return [s for i in range(start, stop) for s in fn(cfg, i)]


def _jobs(cfg: WorldConfig) -> list[tuple]:
    return [(maker, cfg, a, min(a + CHUNK, n)) for maker, n in _streams(cfg) for a in range(0, n, CHUNK)]


def _write_world(cfg: WorldConfig, digest: str, folder: Path) -> None:
    """Generate every dataset into `folder`, train the tokenizer, then write `manifest.json` last."""
    from harness.data.tokenizer import train_tokenizer

    start = time.perf_counter()
    writers: dict[str, ShardWriter] = {}
    tasks: dict[str, Counter] = {}
    categories: dict[str, Counter] = {}
    texts: list[str] = []
    jobs = _jobs(cfg)
    total = sum(n for _, n in _streams(cfg))
    if total >= PARALLEL_MIN and (os.cpu_count() or 1) > 1:
        # fork shares the imported modules; results come back in job order, so the output is identical
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(2) as pool:
            _consume(pool.imap(_run_chunk, jobs), folder, cfg, writers, tasks, categories, texts)
    else:
        _consume(map(_run_chunk, jobs), folder, cfg, writers, tasks, categories, texts)
    for w in writers.values():
        w.close()
    train_tokenizer(texts).save_pretrained(folder / "tokenizer")
    datasets = {
        name: {"count": w.count, "shards": [f"{name}/{s}" for s in w.names],
               "tasks": dict(sorted(tasks[name].items())), "categories": dict(sorted(categories[name].items())),
               "role": "pretrain" if name in PRETRAIN_DATASETS else "finetune" if name in FINETUNE_DATASETS
               else "eval"}
        for name, w in writers.items()
    }
    manifest = {
        "hash": digest,
        "generator": generator_config(cfg),
        "datasets": datasets,
        "counts": {name: d["count"] for name, d in datasets.items()},
        "build_seconds": round(time.perf_counter() - start, 1),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))


def _consume(results, folder: Path, cfg: WorldConfig, writers, tasks, categories, texts) -> None:
    """Write the samples of each finished job in order, and collect counts and the tokenizer's texts; a progress
    line (`harness.progress.ProgressLine`)."""
    shown = ProgressLine("world: chunks written", len(_jobs(cfg)))
    for done, chunk in enumerate(results, 1):
        shown.update(done)
        for dataset, sample in chunk:
            if dataset not in writers:
                (folder / dataset).mkdir()
                writers[dataset] = ShardWriter(folder / dataset, dataset, cfg.samples_per_shard)
                tasks[dataset], categories[dataset] = Counter(), Counter()
            meta = sample.pop("__meta__")
            writers[dataset].write(sample)
            tasks[dataset][meta["task"]] += 1
            if "category" in meta:
                categories[dataset][meta["category"]] += 1
            texts.extend(_texts_of(meta))
    shown.close()


def _texts_of(meta: dict) -> list[str]:
    """Every text field of a sample's json (the tokenizer is trained on them)."""
    out = [meta[k] for k in ("question", "prompt", "answer", "detailed", "text") if isinstance(meta.get(k), str)]
    for q, a in meta.get("turns", []):
        out += [q, a]
    return out

"""The miniature world: a small generated image-text-QA set whose answers depend on the image.

Each sample is one coloured shape on a light, slightly noisy background, paired with one task (`color` QA,
`shape` QA or `caption`). Samples are written once per generator config as standard webdataset tar shards
(`<key>.png`, `<key>.txt`, `<key>.json`, the LAION/CC3M layout) into a content-hashed cache folder, and shared
by every variant: the question phrasing is NOT baked in but chosen when reading (`question`), because variants
differ in which phrasings they train on.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image, ImageDraw

from harness.config.schema import DataConfig

# Bump whenever rendering or the sample layout changes: it is part of the cache hash.
GENERATOR_VERSION = 1

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 205, 30),
    "purple": (140, 60, 180),
    "orange": (245, 130, 20),
}
SHAPES = ("circle", "square", "triangle", "cross")
TASKS = ("color", "shape", "caption")

# Question templates per task, formatted with the sample's `question_fields`. The LAST one is held out:
# evaluation always uses it and training never does, so eval measures generalisation to a new phrasing.
PHRASINGS = {
    "color": (
        "What color is the shape?",
        "What colour is the object in the picture?",
        "Which color is the {shape}?",
        "Name the color of the shape in the image.",
        "What is the color of the {shape}?",
        "Tell me the color of the object.",
        "What color does the {shape} in this image have?",
    ),
    "shape": (
        "What shape is shown?",
        "Which shape is in the picture?",
        "What kind of shape is the {colour} object?",
        "Name the shape in the image.",
        "What is the shape of the {colour} thing?",
        "Tell me which shape you see.",
        "What shape does the {colour} object in this image have?",
    ),
    "caption": (
        "Describe the image.",
        "What is in the picture?",
        "Give a short caption for this image.",
        "Describe what you see.",
        "Write a caption for the picture.",
        "What does the image show?",
        "Briefly describe this picture.",
    ),
}
SUPERSAMPLE = 4  # shapes are drawn at 4x and downsampled, so their edges are anti-aliased


@dataclass(frozen=True)
class World:
    """A built world: its cache folder, manifest and absolute shard paths."""

    path: Path
    manifest: dict
    train_shards: list[str]
    eval_shards: list[str]


def question(meta: dict, phrasing: int) -> str:
    """The question of a sample's task in the given phrasing (index into `PHRASINGS[task]`, negative ok)."""
    return PHRASINGS[meta["task"]][phrasing].format(**meta.get("question_fields", {}))


def generator_config(cfg: DataConfig) -> dict:
    """The fields that determine the world's bytes (and so its cache hash)."""
    return {
        "world_seed": cfg.world_seed,
        "num_train": cfg.num_train,
        "num_eval": cfg.num_eval,
        "render_size": cfg.render_size,
        "samples_per_shard": cfg.samples_per_shard,
        "generator_version": GENERATOR_VERSION,
    }


def world_hash(cfg: DataConfig) -> str:
    """12-hex content hash of the generator config."""
    blob = json.dumps(generator_config(cfg), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def build_world(cfg: DataConfig, cache_root: Path) -> World:
    """Return the world for `cfg`, generating it under `cache_root/world/<hash>` unless already complete."""
    digest = world_hash(cfg)
    final = Path(cache_root) / "world" / digest
    if not (final / "manifest.json").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{digest}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            _write_world(cfg, digest, tmp)
            if final.exists() and not (final / "manifest.json").is_file():
                shutil.rmtree(final)  # an earlier, interrupted build: without a manifest nothing is trusted
            os.rename(tmp, final)
        except OSError:
            if not (final / "manifest.json").is_file():  # else a concurrent builder simply finished first
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    manifest = json.loads((final / "manifest.json").read_text())
    return World(
        path=final,
        manifest=manifest,
        train_shards=[str(final / name) for name in manifest["shards"]["train"]],
        eval_shards=[str(final / name) for name in manifest["shards"]["eval"]],
    )


def _write_world(cfg: DataConfig, digest: str, folder: Path) -> None:
    """Render both splits into `folder` as shards, then write `manifest.json` last (the completeness mark)."""
    shards, tasks = {}, {}
    for split_id, (split, count) in enumerate((("train", cfg.num_train), ("eval", cfg.num_eval))):
        # One independent stream per split, so e.g. changing num_eval leaves the training samples unchanged.
        rng = np.random.default_rng([cfg.world_seed, split_id])
        split_tasks = rng.permutation(np.resize(np.arange(len(TASKS)), count))  # tasks evenly, random order
        pattern = str(folder / f"{split}-%06d.tar")
        # mtime=0 makes the tar bytes a pure function of the config; samples arrive already encoded.
        writer = wds.ShardWriter(pattern, maxcount=cfg.samples_per_shard, verbose=0, mtime=0, encoder=False)
        with writer as sink:
            for i in range(count):
                sink.write(_sample(f"{split}-{i:06d}", TASKS[split_tasks[i]], cfg.render_size, rng))
        shards[split] = sorted(p.name for p in folder.glob(f"{split}-*.tar"))
        tasks[split] = {t: int((split_tasks == k).sum()) for k, t in enumerate(TASKS)}
    manifest = {
        "hash": digest,
        "generator": generator_config(cfg),
        "counts": {"train": cfg.num_train, "eval": cfg.num_eval},
        "tasks": tasks,
        "shards": shards,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))


def _sample(key: str, task: str, size: int, rng: np.random.Generator) -> dict:
    """One encoded webdataset sample: png bytes, caption text and the json with everything a reader needs."""
    colour = list(COLOURS)[rng.integers(len(COLOURS))]
    shape = SHAPES[rng.integers(len(SHAPES))]
    meta = sample_meta(task, colour, shape)
    png = io.BytesIO()
    Image.fromarray(_render(colour, shape, size, rng)).save(png, format="PNG")
    return {
        "__key__": key,
        "png": png.getvalue(),
        "txt": meta["caption"].encode(),
        "json": json.dumps(meta, sort_keys=True).encode(),
    }


def sample_meta(task: str, colour: str, shape: str) -> dict:
    """A sample's json: its task, the fields its question templates use, the answer and the scene."""
    caption = f"{'an' if colour[0] in 'aeiou' else 'a'} {colour} {shape}"
    return {
        "task": task,
        "question_fields": {"color": {"shape": shape}, "shape": {"colour": colour}, "caption": {}}[task],
        "answer": {"color": colour, "shape": shape, "caption": caption}[task],
        "caption": caption,
        "colour": colour,
        "shape": shape,
    }


def all_metas() -> list[dict]:
    """Every sample json the generator can produce (the tokenizer is trained on all their texts)."""
    return [sample_meta(t, c, s) for t in TASKS for c in COLOURS for s in SHAPES]


def _render(colour: str, shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """An RGB uint8 image [size, size, 3] of one shape on a light noisy background."""
    big = size * SUPERSAMPLE
    side = rng.uniform(0.35, 0.7) * big
    cx, cy = rng.uniform(side / 2, big - side / 2, size=2)
    x0, y0, x1, y1 = cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    if shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=255)
    elif shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=255)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=255)
    else:  # cross: a plus sign of two bars a third of the side thick
        t = side / 6
        draw.rectangle((cx - t, y0, cx + t, y1), fill=255)
        draw.rectangle((x0, cy - t, x1, cy + t), fill=255)
    alpha = np.asarray(mask.resize((size, size), Image.Resampling.BOX), dtype=np.float32)[..., None] / 255
    background = rng.uniform(215, 250, size=3)  # light, slightly tinted
    fill = np.clip(np.array(COLOURS[colour]) + rng.uniform(-15, 15, size=3), 0, 255)  # colour jitter
    image = background * (1 - alpha) + fill * alpha + rng.normal(0, 5, size=(size, size, 3))
    return np.clip(image, 0, 255).round().astype(np.uint8)

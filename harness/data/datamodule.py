"""Streams the world's (and optionally real) webdataset shards into model batches for each training stage and for
evaluation (the batch layouts of docs/contracts.md).

Training mixes the stage's datasets by `mixture()` weights: each dataset is an endless, seeded-shuffled stream, and
a seeded generator picks which dataset the next sample comes from, so every variant that shares the data settings
and the seed sees the same samples in the same order. Phrasings are chosen when a sample is read (prompts.py),
seeded by run seed + sample key. Images are downsampled from the world's render size to the stage's resolution.
Evaluation reads a split in order with the prompts baked into its items.

With a frozen-feature cache attached for a resolution (`use_features`), samples at that resolution are not
decoded at all: each image's encoder tokens come from the cache and batches carry `features` [B, F, N, D] instead
of `images` [B, F, 3, H, W] (docs/contracts.md).
"""

from __future__ import annotations

import itertools
import os
import random
import sys
import zlib
from collections.abc import Iterator

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset

from harness.config.schema import DataConfig
from harness.data.chat import IGNORE_INDEX, encode_dialogue, encode_example, encode_prompt, encode_text
from harness.data.mixture import SHARDS, mixture
from harness.data.prompts import BASE, choose_prompt
from harness.data.shards import (
    check_local_shard,
    decode_sample,
    expand_shards,
    image_members,
    shard_reader,
)
from harness.errors import AblateError, one_of

DATA_WORKERS = int(os.environ.get("ABLATE_DATA_WORKERS", 1))  # 0: read batches in the training process
SHUFFLE_BUFFER = 1000  # raw samples held per dataset for shuffling (about one shard at the default shard size)
EVAL_FIELDS = ("keys", "split", "category", "question", "answer", "pair_id", "probe")


def quiet_hand_over(worker_id: int) -> None:
    """In a data worker: a batch hand-over that the training process cut off (Ctrl-C reaches the whole process
    group, and the trainer stops mid-transfer) ends without a traceback. torch passes a batch's shared memory to
    the trainer as a file descriptor, served by a thread of the worker, which prints any connection error it gets
    through `sys.excepthook`. Other errors are printed as before."""
    shown = sys.excepthook

    def hook(kind, value, tb) -> None:
        if not issubclass(kind, (ConnectionError, EOFError)):
            shown(kind, value, tb)

    sys.excepthook = hook


def image_to_tensor(img: Image.Image, image_size: int) -> torch.Tensor:
    """An RGB float tensor [3, image_size, image_size] in [-1, 1] (bicubic resize, mean = std = 0.5)."""
    img = img.convert("RGB")
    if img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.Resampling.BICUBIC)
    pixels = torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1) / 255
    return (pixels - 0.5) / 0.5


def bytes_to_tensor(data: bytes, image_size: int) -> torch.Tensor:
    """`image_to_tensor` of an encoded (PNG/JPEG) image: the preprocessing the feature cache runs."""
    import io

    with Image.open(io.BytesIO(data)) as img:
        return image_to_tensor(img, image_size)


def frame_indices(available: int, wanted: int) -> list[int]:
    """`wanted` frames spread evenly over `available` (1 = the middle frame)."""
    wanted = min(wanted, available)
    return [int((i + 0.5) * available / wanted) for i in range(wanted)]


def _shuffled(samples: Iterator, bufsize: int, rng: random.Random) -> Iterator:
    """A seeded buffer shuffle (webdataset's own reseeds per pass, which would tie order to iteration count)."""
    buf = []
    for s in samples:
        if len(buf) < bufsize:
            buf.append(s)
            continue
        i = rng.randrange(bufsize)
        yield buf[i]
        buf[i] = s
    rng.shuffle(buf)
    yield from buf


def data_rank() -> tuple[int, int]:
    """(rank, world size) of this process in a torch.distributed job, (0, 1) outside one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _Mixed(IterableDataset):
    """Endless training examples of one stage, drawn from the datasets by weight with a seeded generator.

    Under data parallelism every rank draws the same global stream and keeps its own slice of each global batch
    (rank r of W keeps examples r*B .. r*B+B-1 of every W*B), decoding only those: the ranks together see exactly
    the samples one process would see at batch W*B, and no two ranks see the same one.
    """

    def __init__(self, dm: WorldDataModule, stage: str, weights: dict[str, float], image_size: int,
                 start_batch: int = 0):
        self.dm, self.stage, self.weights, self.image_size = dm, stage, weights, image_size
        self.start_batch = start_batch  # global batches already trained on (a resumed run): drawn, not decoded

    def __iter__(self):
        rank, world = data_rank()
        rng = random.Random(f"{self.dm.seed}/{self.stage}/mix")
        names = list(self.weights)
        probs = [self.weights[n] for n in names]
        streams = {}
        skip = self.start_batch * self.dm.batch_size * world
        for position in itertools.count():
            name = rng.choices(names, probs)[0]
            if name not in streams:  # opened on first use: a dataset never drawn costs nothing
                streams[name] = self.dm.endless(name)
            raw = next(streams[name])
            if position >= skip and (position // self.dm.batch_size) % world == rank:
                yield self.dm.train_example(raw, name, self.image_size)


class WorldDataModule(L.LightningDataModule):
    """Training batches per stage and evaluation batches per benchmark split, from a built `World`."""

    def __init__(self, world, data_cfg: DataConfig, tokenizer, image_size: int, batch_size: int, seed: int,
                 mixtures: dict[str, str] | None = None):
        super().__init__()
        self.world, self.cfg, self.tokenizer = world, data_cfg, tokenizer
        self.mixtures = dict(mixtures or {})  # stage -> the mixture it draws (`train.<stage>.mixture`)
        self.image_size, self.batch_size, self.seed = image_size, batch_size, seed
        self.stage = "finetune"  # what Lightning's `train_dataloader` hook serves; set by the caller per stage
        self.real_shards = expand_shards(data_cfg.shards) if data_cfg.shards else []
        for shard in self.real_shards:  # fail before training starts, not mid-run
            check_local_shard(shard)
        self.features: dict[int, object] = {}  # resolution -> FeatureCache (harness.features)

    def use_features(self, image_size: int, cache) -> None:
        """Serve encoder tokens from `cache` (a warmed `harness.features.FeatureCache`) at `image_size`."""
        self.features[image_size] = cache

    def drop_features(self) -> None:
        """Back to pixels everywhere (the encoder's weights changed, so cached tokens are stale)."""
        self.features.clear()

    # ---- training -------------------------------------------------------------------------------------------

    def mixture(self, stage: str) -> dict[str, float]:
        """The stage's dataset weights (see `harness.data.mixture`), from the mixture it names (a paper stage's
        own when the datamodule was not told)."""
        return mixture(stage, self.cfg, self.world, mix=self.mixtures.get(stage))

    def stage_dataloader(self, stage: str, image_size: int | None = None, start_batch: int = 0) -> DataLoader:
        """Endless batches of a stage ("pretrain", "high_res", "finetune" or an added one) at `image_size` (default: the
        datamodule's), from its `start_batch`-th batch on (a resumed run); the layout is `collate_train`'s."""
        dataset = _Mixed(self, stage, self.mixture(stage), image_size or self.image_size, start_batch)
        # One worker process reads, decodes and tokenizes the next batches while the model trains on this one. It
        # is forked on Linux even inside a spawned grid worker (which would otherwise spawn it too): it starts at
        # once instead of re-importing torch, and it inherits the grid worker's Ctrl-C handling, so an interrupt
        # ends it quietly instead of printing an import traceback.
        return DataLoader(dataset, batch_size=self.batch_size, collate_fn=self.collate_train,
                          num_workers=DATA_WORKERS, prefetch_factor=4 if DATA_WORKERS else None,
                          multiprocessing_context="fork" if DATA_WORKERS and sys.platform == "linux" else None,
                          worker_init_fn=quiet_hand_over if DATA_WORKERS else None)

    def train_dataloader(self) -> DataLoader:
        """Lightning's hook: the batches of `self.stage`."""
        return self.stage_dataloader(self.stage)

    def shards_of(self, name: str) -> list[str]:
        return self.real_shards if name == SHARDS else self.world.shards(name)

    def held_out(self, raw: dict) -> bool:
        """Whether a sample belongs to the held-out share (`data.holdout_percent`), by a hash of its key."""
        return zlib.crc32(str(raw["__key__"]).encode()) % 10000 < self.cfg.holdout_percent * 100

    def endless(self, name: str, held_out: bool = False) -> Iterator[dict]:
        """Raw samples of one dataset forever: each pass in a new, seeded shard and sample order. Training reads
        the samples outside the held-out share; `held_out` reads only those inside it."""
        shards, base = self.shards_of(name), self.seed * 1000003 + zlib.crc32(name.encode())
        split = held_out or self.cfg.holdout_percent > 0
        epoch = 0
        while True:
            rng = random.Random(f"{base}/{epoch}")
            n = 0
            for sample in _shuffled(iter(shard_reader(shards, shuffle_seed=base + epoch)), SHUFFLE_BUFFER, rng):
                if split and self.held_out(sample) != held_out:
                    continue
                n += 1
                yield sample
            if n == 0:
                what = "held-out samples (raise data.holdout_percent)" if held_out else "samples"
                raise AblateError(f"dataset '{name}' has no {what} (shards: {', '.join(shards)})")
            epoch += 1

    def validation_batches(self, stage: str, image_size: int | None = None, batches: int = 4) -> list[dict]:
        """Fixed batches of held-out samples drawn by the stage's dataset weights: the same for every trial and
        every evaluation, so a validation loss moves only with the model."""
        if self.cfg.holdout_percent <= 0:
            raise AblateError("a validation loss needs held-out samples: set data.holdout_percent above 0")
        weights = self.mixture(stage)
        names = list(weights)
        rng = random.Random(f"{self.seed}/{stage}/validation")
        streams: dict[str, Iterator[dict]] = {}
        examples = []
        while len(examples) < batches * self.batch_size:
            if not names:
                raise AblateError(f"no dataset of stage {stage} has held-out samples at data.holdout_percent="
                                  f"{self.cfg.holdout_percent}; raise it")
            name = rng.choices(names, [weights[n] for n in names])[0]
            if name not in streams:
                streams[name] = self.endless(name, held_out=True)
            try:
                raw = next(streams[name])
            except AblateError:  # a dataset too small to have a held-out sample: validate on the others
                names.remove(name)
                continue
            examples.append(self.train_example(raw, name, image_size or self.image_size))
        return [self.collate_train(examples[i:i + self.batch_size]) for i in range(0, len(examples), self.batch_size)]

    def frames(self, images: list[Image.Image], image_size: int) -> list[torch.Tensor]:
        """Image tensors of a sample: its frames subsampled to `data.video_frames` (a still image stays one)."""
        keep = frame_indices(len(images), self.cfg.video_frames) if len(images) > 1 else range(len(images))
        return [image_to_tensor(images[i], image_size) for i in keep]

    def visual(self, raw: dict, decoded: dict, image_size: int, cache) -> list[torch.Tensor]:
        """A sample's frames: pixel tensors [3, H, W], or with a `cache` the encoder tokens [N, D] of each."""
        if cache is None:
            return self.frames(decoded["images"], image_size)
        from harness.features import image_digest

        members = image_members(raw)
        keep = frame_indices(len(members), self.cfg.video_frames) if len(members) > 1 else range(len(members))
        return [cache.get(image_digest(members[i])) for i in keep]

    def train_example(self, raw: dict, name: str, image_size: int) -> dict:
        """Decode and tokenize one training sample: frames (list of [3,H,W], or of [N,D] cached encoder tokens),
        input_ids, labels."""
        cache = self.features.get(image_size)
        s = decode_sample(raw, images=cache is None)
        meta, key = s["json"], s["__key__"]
        task = meta.get("task") if name != SHARDS else None
        max_len = self.cfg.max_text_len
        if task is None:  # an outside caption shard (LAION/CC3M layout): txt, or a json `caption`
            answer = s["txt"] or meta.get("caption", "")
            if not answer or not image_members(raw):
                raise AblateError(f"webdataset shard {s['__url__']}: sample '{key}' needs an image and a caption")
            prompt = choose_prompt("caption_short", self.cfg.prompts, self.seed, key)
            example = encode_example(self.tokenizer, prompt, answer, max_len)
        elif task == "text":
            example = encode_text(self.tokenizer, meta["text"], max_len)
        elif task == "dialogue":
            turns = [(choose_prompt("dialogue", self.cfg.prompts, self.seed, key, q) if t == 0 else q, a)
                     for t, (q, a) in enumerate(meta["turns"])]
            example = encode_dialogue(self.tokenizer, turns, max_len)
        elif meta.get("more"):  # a question with follow-ups about the same image: one conversation
            turns = [(meta["question"], meta["answer"]), *meta["more"]]
            turns = [(choose_prompt(task, self.cfg.prompts, self.seed, key, q, turn=t), a)
                     for t, (q, a) in enumerate(turns)]
            example = encode_dialogue(self.tokenizer, turns, max_len)
        elif task == "caption_short" and meta.get("detailed") and \
                random.Random(f"{self.seed}/{key}/detail").random() < self.cfg.detailed_captions:
            prompt = choose_prompt("caption_detailed", self.cfg.prompts, self.seed, key)
            example = encode_example(self.tokenizer, prompt, meta["detailed"], max_len)
        elif task in BASE:
            prompt = choose_prompt(task, self.cfg.prompts, self.seed, key, meta.get("question", ""))
            example = encode_example(self.tokenizer, prompt, meta["answer"], max_len)
        else:
            raise AblateError(f"webdataset shard {s['__url__']}: sample '{key}' has unknown task '{task}'; "
                              f"expected one of {one_of([*BASE, 'text', 'dialogue'])}")
        return {"frames": self.visual(raw, s, image_size, cache), "image_size": image_size, **example}

    def collate_train(self, examples: list[dict]) -> dict:
        """Right-padded batch: images [B,F,3,H,W] float32 (or cached `features` [B,F,N,D]), frames_mask [B,F]
        bool; input_ids, attention_mask, labels [B,T] int64 (labels -100 except answers + eos)."""
        visual = self._stack_frames([e["frames"] for e in examples], examples[0]["image_size"])
        ids, mask = _pad([e["input_ids"] for e in examples], self.tokenizer.pad_token_id, left=False)
        labels, _ = _pad([e["labels"] for e in examples], IGNORE_INDEX, left=False)
        return {**visual, "input_ids": ids, "attention_mask": mask, "labels": labels}

    def _stack_frames(self, rows: list[list[torch.Tensor]], image_size: int | None = None,
                      blind: bool = False) -> dict[str, torch.Tensor]:
        """Pad frame lists to F = the most frames in the batch; text-only rows are all padding.

        Returns `images` [B,F,3,H,W] and `frames_mask` [B,F], or `features` [B,F,N,D] when the resolution is
        served from a feature cache.
        """
        size = image_size or self.image_size
        cache = None if blind else self.features.get(size)
        width = max(1, max(len(row) for row in rows))
        shape = tuple(cache.token_shape()) if cache is not None else (3, size, size)
        dtype = cache.dtype if cache is not None else torch.float32
        values = torch.zeros(len(rows), width, *shape, dtype=dtype)
        mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for i, row in enumerate(rows):
            for t, frame in enumerate(row):
                values[i, t], mask[i, t] = frame, True
        return {"features" if cache is not None else "images": values, "frames_mask": mask}

    # ---- evaluation ------------------------------------------------------------------------------------------

    def eval_batches(self, split: str, batch_size: int, blind: bool = False,
                     image_size: int | None = None) -> Iterator[dict]:
        """Batches of a benchmark split in order: left-padded prompts (no answer) plus the item lists of
        docs/contracts.md; `blind` replaces every image by an all-zero one (the image-dependence control)."""
        size = image_size or self.image_size
        cache = None if blind else self.features.get(size)
        batch = []
        for raw in shard_reader(self.world.shards(split)):
            batch.append(self._eval_example(raw, split, size, cache))
            if len(batch) == batch_size:
                yield self.collate_eval(batch, blind, size)
                batch = []
        if batch:
            yield self.collate_eval(batch, blind, size)

    def _eval_example(self, raw: dict, split: str, image_size: int, cache=None) -> dict:
        s = decode_sample(raw, images=cache is None)
        meta = s["json"]
        prompt = meta.get("prompt") or meta.get("question", "")
        ids = encode_prompt(self.tokenizer, prompt)
        if len(ids) > self.cfg.max_text_len:  # keep bos and the end ("ASSISTANT:"), where generation starts
            ids = ids[:1] + ids[len(ids) - self.cfg.max_text_len + 1:]
        return {"frames": self.visual(raw, s, image_size, cache), "input_ids": ids, "keys": s["__key__"],
                "split": split, "category": meta.get("category", ""), "question": prompt,
                "answer": meta.get("answer", ""), "pair_id": meta.get("pair_id", ""), "probe": meta.get("probe", "")}

    def collate_eval(self, examples: list[dict], blind: bool = False, image_size: int | None = None) -> dict:
        """Left-padded prompts (generation appends on the right) plus python lists of item info."""
        visual = self._stack_frames([e["frames"] for e in examples], image_size, blind)
        if blind:
            visual["images"] = torch.zeros_like(visual["images"])
        ids, mask = _pad([e["input_ids"] for e in examples], self.tokenizer.pad_token_id, left=True)
        lists = {f: [e[f] for e in examples] for f in EVAL_FIELDS}
        return {**visual, "input_ids": ids, "attention_mask": mask, **lists}


def _pad(rows: list[list[int]], value: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad rows to one length: (int64 values [B,T], int64 attention mask [B,T])."""
    width = max(len(r) for r in rows)
    values = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        values[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return values, mask

"""Streams webdataset shards into model batches: images, chat-formatted token ids and masked labels.

Training repeats forever over shuffled shards (Lightning's `max_steps` ends it); every random choice (shard
order, shuffle buffer, question phrasing) is seeded from `seed`, so runs and model variants with one seed see
identical batches. Evaluation reads the eval shards in order with the held-out phrasing.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import lightning as L
import numpy as np
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader

from harness.config.schema import DataConfig
from harness.data.chat import IGNORE_INDEX, encode_example, encode_prompt
from harness.data.world import PHRASINGS, question
from harness.errors import AblateError, one_of

SHUFFLE_BUFFER = 1000  # samples held for shuffling; with 500-sample shards this mixes about two shards
SHUFFLE_INITIAL = 100  # samples buffered before the first one is yielded
SAMPLE_SEED_OFFSET = 1 << 20  # keeps the sample shuffle's rng stream apart from the shard shuffle's
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp")


def image_to_tensor(img: Image.Image, image_size: int) -> torch.Tensor:
    """An RGB float tensor [3, image_size, image_size] in [-1, 1] (bicubic resize, mean = std = 0.5)."""
    img = img.convert("RGB")
    if img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.Resampling.BICUBIC)
    pixels = torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1) / 255
    return (pixels - 0.5) / 0.5


class WorldDataModule(L.LightningDataModule):
    """Training and evaluation batches from webdataset shards in the world's layout (png, txt, json)."""

    def __init__(
        self,
        data_cfg: DataConfig,
        tokenizer,
        train_shards: list[str],
        eval_shards: list[str],
        image_size: int,
        batch_size: int,
        seed: int,
    ):
        super().__init__()
        self.cfg = data_cfg
        self.tokenizer = tokenizer
        self.train_shards = [str(s) for s in train_shards]
        self.eval_shards = [str(s) for s in eval_shards]
        self.image_size = image_size
        self.batch_size = batch_size
        self.seed = seed
        for shard in self.train_shards + self.eval_shards:  # fail before training starts, not mid-run
            _check_local_shard(shard)

    def train_dataloader(self) -> DataLoader:
        """Endless, seeded-shuffled training batches (see `collate_train` for the keys)."""
        pipeline = (
            # detshuffle reseeds with seed + epoch, so each pass has a new but reproducible order. An explicit
            # seed also keeps webdataset from drawing one from the global `random` state.
            wds.WebDataset(
                self.train_shards,
                shardshuffle=len(self.train_shards),
                detshuffle=True,
                seed=self.seed,
                handler=_shard_error_handler(self.train_shards),
            )
            .compose(wds.detshuffle(SHUFFLE_BUFFER, SHUFFLE_INITIAL, seed=self.seed + SAMPLE_SEED_OFFSET))
            .map(self._train_example)
            .repeat()
        )
        # Batching outside the pipeline lets batches run across pass boundaries: no short last batch.
        return DataLoader(pipeline, batch_size=self.batch_size, collate_fn=self.collate_train, num_workers=0)

    def eval_batches(self, batch_size: int) -> Iterator[dict]:
        """Evaluation batches in shard order: left-padded prompts plus the keys, tasks, questions, answers."""
        handler = _shard_error_handler(self.eval_shards)
        pipeline = wds.WebDataset(self.eval_shards, shardshuffle=False, seed=self.seed, handler=handler)
        yield from pipeline.map(self._eval_example).batched(batch_size, collation_fn=self.collate_eval)

    def phrasing(self, key: str, task: str) -> int:
        """A sample's training phrasing: 0 if `fixed`, else seeded by key among all but the held-out one."""
        if self.cfg.prompts == "fixed":
            return 0
        return random.Random(f"{self.seed}/{key}").randrange(len(PHRASINGS[task]) - 1)

    def _train_example(self, sample: dict) -> dict:
        image, meta = _decode(sample)
        q = question(meta, self.phrasing(sample["__key__"], meta["task"]))
        example = encode_example(self.tokenizer, q, meta["answer"], self.cfg.max_text_len)
        return {"image": image_to_tensor(image, self.image_size), **example}

    def _eval_example(self, sample: dict) -> dict:
        image, meta = _decode(sample)
        q = question(meta, -1)  # the held-out phrasing, for every variant
        return {
            "image": image_to_tensor(image, self.image_size),
            "input_ids": encode_prompt(self.tokenizer, q)[: self.cfg.max_text_len],
            "key": sample["__key__"],
            "task": meta["task"],
            "question": q,
            "answer": meta["answer"],
        }

    def collate_train(self, examples: list[dict]) -> dict:
        """Right-padded batch: images [B,3,H,W] float32; input_ids, attention_mask, labels [B,T] int64."""
        ids, mask = _pad([e["input_ids"] for e in examples], self.tokenizer.pad_token_id, left=False)
        labels, _ = _pad([e["labels"] for e in examples], IGNORE_INDEX, left=False)
        images = torch.stack([e["image"] for e in examples])
        return {"images": images, "input_ids": ids, "attention_mask": mask, "labels": labels}

    def collate_eval(self, examples: list[dict]) -> dict:
        """Left-padded prompts (so generation appends on the right) plus python lists of sample info."""
        ids, mask = _pad([e["input_ids"] for e in examples], self.tokenizer.pad_token_id, left=True)
        return {
            "images": torch.stack([e["image"] for e in examples]),
            "input_ids": ids,
            "attention_mask": mask,
            **{f"{name}s": [e[name] for e in examples] for name in ("key", "task", "question", "answer")},
        }


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


def _decode(sample: dict) -> tuple[Image.Image, dict]:
    """The image and the json of a sample; a shard from elsewhere without our json fields is a caption."""
    key, shard = sample.get("__key__"), sample.get("__url__")
    try:
        data = next(sample[ext] for ext in IMAGE_EXTENSIONS if ext in sample)
        image = Image.open(io.BytesIO(data))
        image.load()  # PIL decodes lazily; force it here so a broken image fails with its key
        if "json" not in sample and "txt" not in sample:
            raise ValueError("it has neither a json nor a txt member")
        meta = json.loads(sample["json"]) if "json" in sample else {}
        caption = sample["txt"].decode("utf-8").strip() if "txt" in sample else meta.get("caption", "")
    except StopIteration:
        raise AblateError(
            f"webdataset shard {shard}: sample '{key}' has no image ({'/'.join(IMAGE_EXTENSIONS)})"
        ) from None
    except Exception as exn:
        raise AblateError(f"webdataset shard {shard}: sample '{key}' cannot be decoded: {exn}") from exn
    meta = {"task": "caption", "answer": caption, "question_fields": {}, **meta}
    if meta["task"] not in PHRASINGS:
        raise AblateError(
            f"webdataset shard {shard}: sample '{key}' has unknown task '{meta['task']}'; "
            f"expected one of {one_of(PHRASINGS)}"
        )
    try:  # every phrasing must be fillable, not just the one this run happens to draw
        [question(meta, i) for i in range(len(PHRASINGS[meta["task"]]))]
    except KeyError as exn:
        raise AblateError(f"webdataset shard {shard}: sample '{key}' lacks question field {exn}") from None
    return image, meta


def _check_local_shard(shard: str) -> None:
    """Raise if a local shard is missing or visibly cut short; remote and compressed ones are not checked."""
    url = urlparse(shard)
    if url.scheme not in ("", "file"):
        return
    path = Path(url.path)
    if not path.is_file():
        raise AblateError(f"webdataset shard not found: {shard}")
    if path.suffix != ".tar":
        return
    # Python's tarfile silently ends a stream at a cut-off header, so a truncated copy would just read as a
    # smaller shard. A complete tar is whole 512-byte blocks ending in two zero blocks: check that instead.
    size = path.stat().st_size
    with path.open("rb") as f:
        f.seek(max(size - 1024, 0))
        tail = f.read()
    if size % 512 or len(tail) < 1024 or tail.count(0) != len(tail):
        raise AblateError(
            f"webdataset shard {shard} is truncated or not a tar file (no end-of-archive blocks)"
        )


def _shard_error_handler(shards: list[str]):
    """A webdataset handler that turns any read error into an `AblateError` naming the shard."""

    def handler(exn: Exception) -> bool:
        if isinstance(exn, AblateError):
            exn.args = exn.args[:1]  # webdataset appends (stream, url) to args as the error bubbles up
            raise exn
        # webdataset puts the url (or the open file's repr) into args; an open error carries `filename`.
        context = " ".join(str(a) for a in exn.args) + f" {getattr(exn, 'filename', '')}"
        named = [s for s in shards if s in context]
        where = max(named, key=len) if named else f"(one of {', '.join(shards)})"
        reason = str(exn.args[0]).split(" @ ")[0] if exn.args else ""
        raise AblateError(f"cannot read webdataset shard {where}: {type(exn).__name__}: {reason}") from exn

    return handler

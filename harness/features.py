"""The frozen-feature cache: a frozen vision encoder's outputs, computed once per image and shared by every run.

When the vision encoder is frozen and preprocessing is deterministic (resize + normalise, no augmentation), every
run of a grid that uses the same encoder at the same resolution computes exactly the same tokens for the same
image. The cache computes them once and serves them to every stage, run and worker process that asks.

Identity: a cache folder is named by a hash of everything that decides the tokens: the encoder's weights (every
tensor's name, dtype, shape and bytes), its feature layer, the resolution, the autocast mode it runs under and
`CACHE_VERSION`. Rows are stored in the dtype the encoder returns, so cached and uncached runs see the same
numbers. Images inside it are keyed by the sha1 of their stored bytes (the PNG/JPEG member of the shard),
so datasets that share images (the world's `captions`, `vqa`, `caption`, `place` and `dialogue` samples of one
scene) share rows, and outside shards work the same way.

On disk, `<cache>/features/<identity>/`:
- `block-<id>.npy`: rows [n, N, D] (bf16 is stored as its 16-bit pattern; `dtype.txt` names the dtype);
- `block-<id>.keys`: the n image digests, one per line. It is renamed into place last, so a block without it is an
  interrupted write and is ignored;
- `warmed.json`: the datasets already encoded, with a signature of their shards (paths, sizes, mtimes);
- `lock`: an exclusive file lock held while warming, so concurrent workers never encode the same images twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from harness.errors import AblateError
from harness.placement import AUTOCAST, autocast_mode, autocast_on, module_device

log = logging.getLogger("ablate")
CACHE_VERSION = 1
BLOCK_ROWS = 4096  # rows per block file
ENCODE_BATCH = 64  # images per encoder call while warming
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def image_digest(data: bytes) -> str:
    """The key of one stored image: sha1 of its encoded bytes (16 hex digits)."""
    return hashlib.sha1(data).hexdigest()[:16]


def weights_digest(module: nn.Module) -> str:
    """sha256 over every tensor of a module's state dict: name, dtype, shape and bytes."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def cache_identity(encoder: nn.Module, image_size: int, autocast: str | None) -> str:
    """The folder name of the cache for `encoder` at `image_size` under `autocast` (None, "bf16" or "fp16")."""
    parts = {
        "version": CACHE_VERSION, "weights": weights_digest(encoder), "image_size": image_size,
        "feature_layer": getattr(encoder, "feature_layer", "last"), "autocast": autocast,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def shard_signature(shards: Iterable[str]) -> list[list]:
    """What identifies a dataset's shards on disk: each path with its size and modification time."""
    out = []
    for shard in shards:
        path = Path(shard)
        stat = path.stat() if path.is_file() else None
        out.append([str(path.resolve()) if stat else shard, stat.st_size if stat else -1,
                    stat.st_mtime_ns if stat else -1])
    return out


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().to("cpu").contiguous()
    return t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()


class FeatureCache:
    """One encoder's tokens at one resolution under one autocast mode, keyed by image digest; safe across
    processes."""

    def __init__(self, folder: Path, autocast: str | None = None) -> None:
        if autocast not in AUTOCAST:
            raise AblateError(f"feature cache autocast must be one of {list(AUTOCAST)}, got {autocast!r}")
        self.folder = Path(folder)
        self.autocast = autocast
        self._rows: dict[str, tuple[int, int]] = {}  # digest -> (block index, row)
        self._blocks: list[np.ndarray] = []
        self._seen: set[str] = set()  # block names already indexed

    @classmethod
    def for_encoder(cls, root: Path, encoder: nn.Module, image_size: int, autocast: str | None = None) -> FeatureCache:
        """The cache of `encoder` at `image_size` under `root` (created if missing)."""
        folder = Path(root) / cache_identity(encoder, image_size, autocast)
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder, autocast)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the stored rows (what the encoder returned)."""
        path = self.folder / "dtype.txt"
        return DTYPES[path.read_text().strip()] if path.is_file() else torch.float32

    # ---- reading ------------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Index every complete block written since the last look (by this or another process)."""
        for keys in sorted(self.folder.glob("block-*.keys")):
            if keys.name in self._seen:
                continue
            rows = np.load(keys.with_suffix(".npy"), mmap_mode="r")
            index = len(self._blocks)
            self._blocks.append(rows)
            for row, digest in enumerate(keys.read_text().split()):
                self._rows.setdefault(digest, (index, row))
            self._seen.add(keys.name)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, digest: str) -> bool:
        return digest in self._rows

    def get(self, digest: str) -> torch.Tensor:
        """The tokens [N, D] of one image; an image that was never encoded is an error naming the cache."""
        if digest not in self._rows:
            self.refresh()
            if digest not in self._rows:
                raise AblateError(f"feature cache {self.folder} has no entry for image {digest}; warm it with the "
                                  "stage's datasets first (FeatureCache.warm)")
        block, row = self._rows[digest]
        array = np.array(self._blocks[block][row])  # a copy: the block stays memory-mapped and read-only
        tensor = torch.from_numpy(array)
        return tensor.view(torch.bfloat16) if array.dtype == np.int16 else tensor

    def token_shape(self) -> tuple[int, int]:
        """(N, D) of every row (after at least one block exists)."""
        self.refresh()
        if not self._blocks:
            raise AblateError(f"feature cache {self.folder} is empty")
        return tuple(self._blocks[0].shape[1:])

    # ---- writing ------------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.folder / "lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _warmed(self) -> dict:
        path = self.folder / "warmed.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def warm(self, encoder: nn.Module, datasets: dict[str, list[str]], image_size: int,
             to_pixels, device: torch.device | str = "cpu") -> int:
        """Encode every image of `datasets` (name -> shard paths) not yet in the cache; returns how many were new.

        `to_pixels(bytes, image_size) -> [3, H, W]` is the run's deterministic preprocessing. A dataset whose
        shards have not changed since it was last warmed is skipped without reading it.
        """
        from harness.data.shards import image_members, shard_reader

        new = 0
        with self._locked():
            self.refresh()
            warmed = self._warmed()
            for name, shards in sorted(datasets.items()):
                signature = shard_signature(shards)
                if warmed.get(name) == signature:
                    continue
                pending: dict[str, bytes] = {}
                for sample in shard_reader(shards):
                    for data in image_members(sample):
                        digest = image_digest(data)
                        if digest not in self._rows and digest not in pending:
                            pending[digest] = data
                new += self._encode(encoder, pending, image_size, to_pixels, device)
                warmed[name] = signature
                tmp = self.folder / f".warmed-{uuid.uuid4().hex[:8]}.json"
                tmp.write_text(json.dumps(warmed, sort_keys=True))
                os.replace(tmp, self.folder / "warmed.json")
        return new

    @torch.no_grad()
    def _encode(self, encoder: nn.Module, pending: dict[str, bytes], image_size: int, to_pixels, device) -> int:
        digests = list(pending)
        was_training = encoder.training
        encoder.eval()
        try:
            for start in range(0, len(digests), BLOCK_ROWS):
                chunk = digests[start:start + BLOCK_ROWS]
                rows = []
                for b in range(0, len(chunk), ENCODE_BATCH):
                    pixels = torch.stack([to_pixels(pending[d], image_size) for d in chunk[b:b + ENCODE_BATCH]])
                    with autocast_on(device, self.autocast):
                        rows.append(encoder(pixels.to(device)).cpu())
                self._write_block(chunk, torch.cat(rows))
        finally:
            encoder.train(was_training)
        return len(digests)

    def _write_block(self, digests: list[str], rows: torch.Tensor) -> None:
        name = f"block-{uuid.uuid4().hex[:12]}"
        dtype = str(rows.dtype).removeprefix("torch.") + "\n"
        path = self.folder / "dtype.txt"
        if not path.is_file() or path.read_text() != dtype:  # replaced whole: readers hold no lock
            tmp = self.folder / f".dtype-{uuid.uuid4().hex[:8]}.txt"
            tmp.write_text(dtype)
            os.replace(tmp, path)
        with open(self.folder / f".{name}.npy", "wb") as f:
            np.save(f, _to_numpy(rows))
        os.replace(self.folder / f".{name}.npy", self.folder / f"{name}.npy")
        tmp = self.folder / f".{name}.keys"
        tmp.write_text("\n".join(digests) + "\n")
        os.replace(tmp, self.folder / f"{name}.keys")  # last: the block now exists for every reader
        self.refresh()


def stage_features(root: Path, model, data, stage_name: str, datasets: list[str], image_size: int,
                   precision: str, enabled: bool, vision_trains: bool, vision_changed: bool) -> str:
    """Serve a stage's (or the benchmark's) images from the cache when that is exact; returns the decision.

    The cache is used when it is enabled and the encoder is frozen now and was never trained earlier in the run
    (its tokens would then differ from the cached ones). `datasets` are warmed first, which encodes only the
    images no earlier run has encoded. `data` is the run's `WorldDataModule`.
    """
    if not enabled:
        data.drop_features()
        return "off (train.feature_cache is false)"
    if vision_trains or vision_changed:
        data.drop_features()
        why = "trains in this stage" if vision_trains else "was trained by an earlier stage"
        return f"skipped: the vision encoder {why}, so its tokens are computed on the fly"
    from harness.data.datamodule import bytes_to_tensor

    cache = FeatureCache.for_encoder(root, model.vision, image_size, autocast_mode(precision))
    new = cache.warm(model.vision, {name: data.shards_of(name) for name in datasets}, image_size,
                     bytes_to_tensor, module_device(model.vision))
    data.use_features(image_size, cache)
    return f"cached at {image_size}px ({len(cache)} images, {new} encoded now) in {cache.folder.name}"

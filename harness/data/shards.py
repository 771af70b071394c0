"""Webdataset shards: a deterministic writer and a reader that turns every kind of damage into one clear error.

Shards are standard tars in the LAION/CC3M layout: members `<key>.<ext>` grouped by key (`png`/`jpg` image,
`frame{i}.png` video frames, `txt`, `json`), so shards written by any outside tool read the same way. The writer
sets every tar header field, so a shard's bytes are a pure function of its samples.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import webdataset as wds
from PIL import Image

from harness.errors import AblateError

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp")
FRAME = re.compile(r"frame(\d+)\.(?:png|jpg|jpeg|webp)$")


class ShardWriter:
    """Writes samples (dicts of `__key__` + ext -> bytes) to `<folder>/<prefix>-000000.tar`, ... ."""

    def __init__(self, folder: Path, prefix: str, per_shard: int):
        self.folder, self.prefix, self.per_shard = Path(folder), prefix, per_shard
        self.names: list[str] = []
        self.count = 0
        self._tar: tarfile.TarFile | None = None

    def write(self, sample: dict) -> None:
        if self.count % self.per_shard == 0:
            self._close()
            name = f"{self.prefix}-{len(self.names):06d}.tar"
            self.names.append(name)
            self._tar = tarfile.open(self.folder / name, "w", format=tarfile.USTAR_FORMAT)
        key = sample["__key__"]
        for ext, data in sample.items():
            if ext.startswith("__"):
                continue
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            self._tar.addfile(info, io.BytesIO(data))
        self.count += 1

    def _close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None

    def close(self) -> None:
        self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_CHECKED: dict[tuple, None] = {}  # (path, size, mtime) of shards whose headers were walked in this process


def check_local_shard(shard: str) -> None:
    """Raise if a local shard is missing, cut short or has a damaged header; remote and compressed ones are not
    checked. Each file is walked once per process (headers only, by seeking)."""
    url = urlparse(shard)
    if url.scheme not in ("", "file"):
        return
    path = Path(url.path)
    if not path.is_file():
        raise AblateError(f"webdataset shard not found: {shard}")
    if path.suffix != ".tar":
        return
    stat = path.stat()
    if (str(path), stat.st_size, stat.st_mtime_ns) in _CHECKED:
        return
    # Python's tarfile silently ends an archive at a cut-off or damaged header, so a broken shard would just read
    # as a smaller one. A complete tar is whole 512-byte blocks and, after its last member, only zero blocks.
    size = stat.st_size
    try:
        with tarfile.open(path) as tar:
            members = tar.getmembers()
    except (OSError, tarfile.TarError) as exn:
        raise AblateError(f"webdataset shard {shard} is not a readable tar file: {exn}") from exn
    end = members[-1].offset_data + -(-members[-1].size // 512) * 512 if members else 0
    with path.open("rb") as f:
        f.seek(end)
        rest = f.read()
    if size % 512 or len(rest) < 1024 or rest.count(0) != len(rest):
        last = members[-1].name.rsplit("/", 1)[-1].split(".", 1)[0] if members else None
        where = f"after sample '{last}'" if last else "at its first sample"
        problem = "is truncated" if len(rest) < 1024 or size % 512 else "has a damaged tar header"
        raise AblateError(f"webdataset shard {shard} {problem} {where} (no valid end-of-archive blocks)")
    _CHECKED[(str(path), stat.st_size, stat.st_mtime_ns)] = None


def check_shards(pattern: str) -> None:
    """Every local shard of a `data.shards` pattern exists and is whole (checked before a grid writes anything)."""
    for shard in expand_shards(pattern):
        try:
            check_local_shard(shard)
        except AblateError as err:
            raise AblateError(f"data.shards: {err}") from None


def shard_reader(shards: list[str], shuffle_seed: int | None = None) -> wds.WebDataset:
    """A webdataset pipeline over `shards` (in order, or shuffled by `shuffle_seed`) whose errors are
    `AblateError`s naming the shard and the sample key (the last one read when the tar itself is damaged)."""
    shards = [str(s) for s in shards]
    for shard in shards:  # fail before training starts, not mid-run
        check_local_shard(shard)
    last = {"key": None, "url": None}

    def track(sample: dict) -> dict:
        last["key"], last["url"] = sample.get("__key__"), sample.get("__url__")
        return sample

    def handler(exn: Exception) -> bool:
        if isinstance(exn, AblateError):
            exn.args = exn.args[:1]  # webdataset appends (stream, url) to args as the error bubbles up
            raise exn
        # webdataset puts the url (or the open file's repr) into args; an open error carries `filename`.
        context = " ".join(str(a) for a in exn.args) + f" {getattr(exn, 'filename', '')}"
        named = [s for s in shards if s in context]
        where = max(named, key=len) if named else (last["url"] or f"(one of {', '.join(shards)})")
        after = f" after sample '{last['key']}'" if last["key"] and last["url"] == where else " at its first sample"
        reason = str(exn.args[0]).split(" @ ")[0] if exn.args else ""
        raise AblateError(f"cannot read webdataset shard {where}{after}: {type(exn).__name__}: {reason}") from exn

    shuffle = dict(shardshuffle=len(shards), detshuffle=True, seed=shuffle_seed) if shuffle_seed is not None \
        else dict(shardshuffle=False)
    # Every rank reads every shard: data parallelism splits the mixed stream by batch position instead
    # (harness.data.datamodule._Mixed), which keeps the ranks' union equal to one process's stream.
    return wds.WebDataset(shards, handler=handler, empty_check=False, nodesplitter=every_shard, **shuffle).map(track)


def every_shard(urls):
    """webdataset node splitter that keeps all shards on every rank."""
    return urls


def image_extensions(sample: dict) -> list[str]:
    """The image members of a raw sample in frame order: `frame0.png`, `frame1.png`, ... or the one `png`/`jpg`."""
    frames = sorted((int(m.group(1)), ext) for ext in sample if (m := FRAME.fullmatch(ext)))
    return [ext for _, ext in frames] or [e for e in IMAGE_EXTENSIONS if e in sample][:1]


def image_members(sample: dict) -> list[bytes]:
    """The encoded bytes of a raw sample's images, in frame order (empty for a text-only sample)."""
    return [sample[ext] for ext in image_extensions(sample)]


def decode_sample(sample: dict, images: bool = True) -> dict:
    """Decode a raw sample: `images` (list of PIL, frames in order; empty for text, and left out when `images` is
    False: a feature cache serves them), `json` (dict), `txt` (str)."""
    key, shard = sample.get("__key__"), sample.get("__url__")
    exts = image_extensions(sample)
    try:
        decoded = []
        for ext in exts if images else ():
            img = Image.open(io.BytesIO(sample[ext]))
            img.load()  # PIL decodes lazily; force it here so a broken image fails with its key
            decoded.append(img)
        meta = json.loads(sample["json"]) if "json" in sample else {}
        text = sample["txt"].decode("utf-8").strip() if "txt" in sample else ""
    except Exception as exn:
        raise AblateError(f"webdataset shard {shard}: sample '{key}' cannot be decoded: {exn}") from exn
    if not exts and not text and not meta:
        raise AblateError(f"webdataset shard {shard}: sample '{key}' has no image, txt or json member")
    return {"__key__": key, "__url__": shard, "images": decoded, "json": meta, "txt": text}


def iter_samples(shards: Iterable[str]) -> Iterator[dict]:
    """Every sample of the shards, in order, decoded (see `decode_sample`)."""
    yield from shard_reader(list(shards)).map(decode_sample)


def expand_shards(pattern: str) -> list[str]:
    """Shard paths of a brace (`{000..009}`) and/or glob pattern; an `AblateError` when nothing matches."""
    import glob

    import braceexpand

    paths = []
    for part in braceexpand.braceexpand(pattern):
        paths.extend(sorted(glob.glob(part)) if any(c in part for c in "*?[") else [part])
    if not paths:
        raise AblateError(f"data.shards '{pattern}' matches no shard")
    return paths

"""Zoo entries on disk: the `zoo_entry.json` manifest, integrity checks, atomic installs, and source resolution.

An entry is a folder. It is built in a temporary sibling folder, its manifest (every file with its size and
sha256, the spec hash, the quality numbers) is written LAST, and only then is the folder renamed into place. So a
folder without a valid manifest, or whose files differ from it, is an interrupted or damaged build: `verify_entry`
says what is wrong, `build_zoo` rebuilds it and `resolve_source` refuses to hand it out.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from harness.errors import AblateError, did_you_mean, one_of

ENTRIES = ("llm-base", "llm-instruct", "vit-large", "vit-small")
MANIFEST = "zoo_entry.json"
VIT_WEIGHTS = "model.safetensors"
BUILD_HINT = "rebuild it with `ablate zoo build`"


def file_record(path: Path) -> dict[str, Any]:
    """Size and sha256 of one file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"size": path.stat().st_size, "sha256": h.hexdigest()}


def write_manifest(folder: Path, entry: str, spec_hash: str, quality: dict[str, float], extra: dict) -> dict:
    """Record every file of `folder` in its manifest; call after everything else is written."""
    files = {
        p.relative_to(folder).as_posix(): file_record(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {
        "entry": entry, "spec_hash": spec_hash, "files": files, "quality": quality,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def read_manifest(folder: Path) -> dict | None:
    """The entry's manifest, or None when it is missing or unreadable."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) else None


def verify_entry(folder: Path, deep: bool = True) -> str | None:
    """None if the entry is complete and intact, else why not. `deep` also checks every sha256 (slower)."""
    if not folder.is_dir():
        return "is missing"
    manifest = read_manifest(folder)
    if manifest is None:
        return f"has no valid {MANIFEST} (an interrupted or partial build)"
    if not manifest["files"]:
        return f"{MANIFEST} lists no files"
    for name, rec in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            return f"is missing {name}"
        size = path.stat().st_size
        if size != rec.get("size"):
            return f"has {name} of {size} bytes, {rec.get('size')} recorded"
        if deep and file_record(path)["sha256"] != rec.get("sha256"):
            return f"has {name} with a different sha256 than recorded (corrupt)"
    return None


def install(tmp: Path, final: Path) -> None:
    """Move a finished build into place, replacing a damaged or outdated entry."""
    if final.exists():
        trash = final.with_name(f".trash-{final.name}-{uuid.uuid4().hex[:8]}")
        os.rename(final, trash)  # rename first so `final` is never a half-deleted folder
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.rename(tmp, final)
    except OSError:
        # A concurrent build of the same entry won the race; keep its result if it is complete.
        if verify_entry(final, deep=False) is not None:
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def temp_folder(out_dir: Path, entry: str) -> Path:
    """A fresh folder next to the entry's final place (same filesystem, so the rename is atomic)."""
    tmp = out_dir / f".tmp-{entry}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    return tmp


def zoo_complete(out_dir: Path | str) -> bool:
    """True when every zoo entry exists and matches its manifest (sizes and hashes)."""
    return all(verify_entry(Path(out_dir) / name) is None for name in ENTRIES)


def resolve_source(source: str, zoo_dir: Path | str) -> str:
    """Turn a backbone source into what the loaders take; never downloads.

    "random" -> "random"; "zoo:llm-base" / "zoo:llm-instruct" -> the entry's `save_pretrained` folder;
    "zoo:vit-large" / "zoo:vit-small" -> the entry's timm weight file (`model.safetensors`, with the
    `create_model` kwargs in the `config.json` next to it); anything else is a local path that must exist.
    """
    if source == "random":
        return source
    if source.startswith("zoo:"):
        name = source.removeprefix("zoo:")
        if name not in ENTRIES:
            raise AblateError(f"unknown zoo entry '{name}' in source '{source}'{did_you_mean(name, ENTRIES)}; "
                              f"known: {one_of(ENTRIES)}")
        folder = Path(zoo_dir) / name
        problem = verify_entry(folder)
        if problem is not None:
            raise AblateError(f"zoo entry '{name}' at {folder} {problem}; {BUILD_HINT}")
        return str(folder / VIT_WEIGHTS) if name.startswith("vit-") else str(folder)
    path = Path(source).expanduser()
    if not path.exists():
        raise AblateError(f"backbone source '{source}' is not 'random', a 'zoo:<entry>' ({one_of(ENTRIES)}) "
                          "or an existing local path; nothing is downloaded")
    return str(path)


def describe_zoo(out_dir: Path | str, entries=None) -> list[str]:
    """One line per entry (all, or those in `entries`): its state and the quality it reached."""
    lines = []
    for name in [e for e in ENTRIES if entries is None or e in entries]:
        folder = Path(out_dir) / name
        problem = verify_entry(folder)
        if problem is not None:
            lines.append(f"{name:13s} not usable: {problem}")
            continue
        manifest = read_manifest(folder) or {}
        q = manifest.get("quality", {})
        size_mb = sum(r["size"] for r in manifest["files"].values()) / 1e6
        if name.startswith("llm-"):
            what = f"held-out ppl {q.get('heldout_ppl', float('nan')):.2f}, " \
                   f"dialogue loss {q.get('dialogue_loss', float('nan')):.3f}"
        else:
            what = (f"retrieval top-1 {100 * q.get('retrieval_top1_unique', float('nan')):.1f}% among "
                    f"{q.get('heldout_unique_captions', 0):.0f} held-out captions "
                    f"(chance {100 * q.get('retrieval_chance_unique', float('nan')):.1f}%)")
            if "retrieval_top1_high_res" in q:
                what += f", {100 * q['retrieval_top1_high_res']:.1f}% at {q['high_res_size']:.0f} px"
            heads = [(label, k) for label, k in (("shape", "cell_shape"), ("colour", "cell_colour"),
                                                 ("action", "cell_action"), ("sign text", "sign_text"))
                     if f"aux_{k}_acc" in q]
            if heads:
                what += "; heads (low/high res): " + ", ".join(
                    f"{label} {100 * q[f'aux_{k}_acc']:.0f}/{100 * q.get(f'aux_{k}_acc_high_res', float('nan')):.0f}%"
                    for label, k in heads)
        lines.append(f"{name:13s} ok  {what}; {size_mb:.1f} MB, built in "
                     f"{q.get('build_seconds', float('nan')):.0f}s on {manifest.get('created', '?')}")
    return lines

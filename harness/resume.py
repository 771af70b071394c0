"""Resume points: what a killed run needs to go on from its last checkpoint and end as if never interrupted.

The runner writes one at the end of every stage and, with `train.checkpoint_every: N`, every N steps inside a
stage: the weights trained so far, the optimizer and learning-rate schedule, the random number generators, the
stage and step (the data stream is replayed to that step without decoding), and what the run has measured so far.
It lives in the run's checkpoint folder as `resume.pt` (written whole, then renamed, so a kill never leaves half a
file), with a small `resume.json` that `ablate grid status` reads. The grid resumes a killed or stale run into the
same MLflow run when its folder holds a resume point of that MLflow run; the point is removed once the run ends.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

RESUME_FILE = "resume.pt"
SUMMARY_FILE = "resume.json"


def checkpoint_dir(store, key: str) -> Path:
    """A run's checkpoint folder in an output folder (`Store`): its trained weights, config and resume point."""
    return store.root / "checkpoints" / key


WEIGHTS_DIGEST = "ablate.checkpoint_sha256"  # the run tag naming the trained weights it was scored with


def weights_digest(folder: Path) -> str:
    """16 hex digits of the sha256 of a checkpoint folder's `trainable.pt` (the run's trained weights): runs that
    share the folder (one run key) can tell whether it still holds the weights their scores came from."""
    import hashlib

    digest = hashlib.sha256()
    with open(folder / "trainable.pt", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


@dataclass
class ResumePoint:
    """A run's state between two training steps."""

    run_id: str  # the MLflow run it belongs to
    stage_index: int  # the stage to train next, among the active stages (their count: training is done)
    stage: str  # its name ("eval" once training is done)
    done: int  # steps of that stage already trained
    trained: list[str]  # parameters some stage trained so far
    weights: dict[str, torch.Tensor]  # their values
    optimizer: dict | None = None  # mid-stage: the stage's optimizer and schedule states
    scheduler: dict | None = None
    seconds: float = 0.0  # mid-stage: training time of the stage so far
    metrics: dict[str, float] = field(default_factory=dict)  # what the finished stages measured
    freeze_report: list[str] = field(default_factory=list)
    feature_log: dict[str, str] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)


def capture_rng() -> dict[str, Any]:
    import numpy as np
    import torch

    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def restore_rng(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    if state:
        torch.set_rng_state(state["torch"])
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])


def save_point(folder: Path, point: ResumePoint) -> None:
    """Write the resume point whole, then swap it in."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (RESUME_FILE + ".tmp")
    torch.save(asdict(point), tmp)
    os.replace(tmp, folder / RESUME_FILE)
    summary = {"run_id": point.run_id, "stage": point.stage, "done": point.done}
    tmp = folder / (SUMMARY_FILE + ".tmp")  # swapped in too: `grid status` may read it while a run writes it
    tmp.write_text(json.dumps(summary) + "\n")
    os.replace(tmp, folder / SUMMARY_FILE)


def load_point(folder: Path, run_id: str) -> ResumePoint | None:
    """The folder's resume point when it belongs to MLflow run `run_id`, else None."""
    import torch

    path = folder / RESUME_FILE
    if not path.is_file():
        return None
    raw = torch.load(path, map_location="cpu", weights_only=False)  # our own file: it holds RNG states
    return ResumePoint(**raw) if raw.get("run_id") == run_id else None


def _summary(folder: Path) -> dict | None:
    """The folder's resume-point summary, or None when it has no complete resume point."""
    try:
        summary = json.loads((folder / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return summary if (folder / RESUME_FILE).is_file() else None


def describe_point(folder: Path) -> str | None:
    """'finetune step 30' for the folder's resume point (from its summary), or None."""
    summary = _summary(folder)
    if summary is None:
        return None
    return "evaluation" if summary["stage"] == "eval" else f"{summary['stage']} step {summary['done']}"


def resumable_by(folder: Path, run_id: str) -> bool:
    """Whether the folder's resume point belongs to MLflow run `run_id` (read from its summary)."""
    summary = _summary(folder)
    return summary is not None and summary.get("run_id") == run_id


def discard(folder: Path) -> None:
    for name in (RESUME_FILE, RESUME_FILE + ".tmp", SUMMARY_FILE, SUMMARY_FILE + ".tmp"):
        (folder / name).unlink(missing_ok=True)

"""Time the parts of a study on this machine and append the figures to benchmarks/RESULTS.md.

    python benchmarks/bench.py [--scale tiny] [--variants lynx] [--out DIR]

Measures, in a fresh output folder: the world build, the backbone zoo build (with the qualities it reaches),
and one grid run per variant (seconds per stage, samples per second, evaluation seconds, overall scores).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import torch

from harness.assets import ensure_zoo
from harness.config.resolve import resolve
from harness.data import build_tokenizer, build_world
from harness.experiment import Experiment
from harness.grid import run_grid
from harness.tracking import Store
from harness.zoo import describe_zoo

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--variants", default="lynx", help="comma-separated variants to time")
    parser.add_argument("--out", default=None, help="output folder (default: a fresh temporary one)")
    args = parser.parse_args()
    store = Store(Path(args.out or tempfile.mkdtemp(prefix="ablate-bench-")))
    store.create()
    config = resolve("lynx", args.scale).config
    lines = [f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, scale `{args.scale}`",
             "", f"{os.cpu_count()} cores, torch {torch.__version__}, {platform.processor() or platform.machine()}",
             f"command: `python benchmarks/bench.py --scale {args.scale} --variants {args.variants}`", ""]

    started = time.perf_counter()
    world = build_world(config.world, store.cache)
    tokenizer = build_tokenizer(world)
    lines.append(f"- world build: {time.perf_counter() - started:.1f} s (vocabulary {len(tokenizer)})")

    started = time.perf_counter()
    folder = ensure_zoo(config, store, world, tokenizer)
    lines.append(f"- zoo build: {time.perf_counter() - started:.1f} s")
    lines += [f"  - {line}" for line in describe_zoo(folder)]

    variants = [v for v in args.variants.split(",") if v != "lynx"]
    experiment = Experiment(name="bench", path=Path("bench"), scale=args.scale, baseline="lynx",
                            variants=tuple(variants))
    started = time.perf_counter()
    run_grid(experiment, store)
    lines.append(f"- grid of {1 + len(variants)} run(s): {time.perf_counter() - started:.1f} s")
    mlflow.set_tracking_uri(store.tracking_uri)
    runs = mlflow.search_runs(experiment_names=["bench"], filter_string="tags.`ablate.kind` = 'run'")
    for _, run in runs.iterrows():
        stages = ", ".join(f"{s} {run.get(f'metrics.time/{s}_s', float('nan')):.1f} s"
                           for s in ("pretrain", "high_res", "finetune", "eval"))
        lines.append(f"  - {run['tags.ablate.variant']}: {stages}; Open-VQA image "
                     f"{run.get('metrics.eval/openvqa_image/acc', float('nan')):.1f}%, video "
                     f"{run.get('metrics.eval/openvqa_video/acc', float('nan')):.1f}%")
    text = "\n".join(lines) + "\n\n"
    print(text)
    with RESULTS.open("a") as handle:
        handle.write(text)


if __name__ == "__main__":
    main()

"""Does torch.compile pay on this CPU? The training step eager and compiled (inductor, dynamic shapes),
interleaved in one process, plus what compiling costs:

    python benchmarks/compile_step.py [--scale small] [--threads 1] [--steps 14] [--rounds 3]

2026-11-28 (stop 22), `small`, one thread, cached features: 174 -> 158 ms a step (1.10x) with a cold compile cache,
whose first compiled step took 71 s and a batch of a new shape 12 s more; run again with inductor's cache warm,
157 -> 146 ms (1.07x), compiling 20 s and 5 s. A `small` run trains about 1,000 steps in three stages, so compiling
saves 11-16 s of steps for 25-83 s of compiling (each grid worker and stage compiles again): not adopted.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    from bench import Bench, side_by_side_args

    args = side_by_side_args(__doc__)

    bench = Bench(args.scale, Path(tempfile.mkdtemp(prefix="ablate-compile-")))
    forwards = {"eager": bench.model.forward, "compiled": torch.compile(bench.model.forward, dynamic=True)}
    times: dict[str, list[float]] = {name: [] for name in forwards}
    slow: list[float] = []  # compiled steps over a second: the first compile and each recompile
    for _ in range(args.rounds):
        for name, forward in forwards.items():
            bench.model.forward = forward
            steps = bench.plain(bench.cached, args.steps, bench.cfg.train.precision)
            times[name] += [t for t in steps[3:] if t < 1.0]
            slow += [t for t in steps if t >= 1.0] if name == "compiled" else []
    eager, compiled = (statistics.median(times[k]) for k in forwards)
    print(f"{args.scale}, {args.threads} thread(s), cached features: eager {eager * 1e3:.0f} ms, compiled "
          f"{compiled * 1e3:.0f} ms a step ({eager / compiled:.2f}x); compiling: "
          f"{', '.join(f'{t:.0f} s' for t in slow) or 'none over 1 s'}")


if __name__ == "__main__":
    main()

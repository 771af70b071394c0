"""The speed benchmark: figures measured side by side in one process, written to BENCHMARKS.md and
benchmarks/latest.json (one key per figure), and appended to benchmarks/RESULTS.md.

    python benchmarks/bench.py [--scale small] [--steps 40] [--rounds 3] [--grid experiments/lynx_table3.yaml]

This machine is shared and noisy, so every figure is a ratio or a median of interleaved rounds:
- harness_over_plain: a Lightning stage step (the project's module, MLflow callback on a real sqlite store) over a
  plain PyTorch loop on the same model and data, both on cached features;
- cache_speedup: a plain step computing the frozen encoder over one reading its cached tokens;
- packing_speedup: a plain cached step on the padded batch over one on packed rows (train.sequence_packing);
- data_wait_share: the share of a harness step spent waiting for the next batch;
- flops: model FLOPs per step (torch's FlopCounterMode) over the step time, against a matrix-product peak
  measured here for bf16 and fp32; and the step in bf16 autocast against fp32;
- precision by scale (--precision-scales): the same plain cached step in fp32 and in bf16 autocast at each listed
  scale, with its share of the matching matrix peak, to settle each preset's precision on this machine. `base`
  runs at batch 2 on a world of a few dozen samples (its own would not fit this machine); `paper` does not fit
  in this machine's memory in fp32 and is measured by benchmarks/gpu_check.py on a GPU;
- with --grid: eval_share (evaluation seconds over run seconds) and table3_small_s (the grid's wall time, world
  and zoo built beforehand and not counted).
Speed does not depend on weights, so the step figures use random-init backbones and need no zoo.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GOALS = {"harness_over_plain": ("<=", 1.05), "cache_speedup": (">=", 2.0), "data_wait_share": ("<", 0.05),
         "eval_share": ("<", 0.20), "table3_small_s": ("<", 420.0)}


def side_by_side_args(doc: str) -> argparse.Namespace:
    """The options of a side-by-side step script (step_savings.py, compile_step.py), parsed; torch's threads set."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--scale", default="small")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=14, help="steps per round (the first 3 are not timed)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 6) -> float:
    """FLOP/s of an n x n x n matrix product on this CPU (best of `reps`)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best


def as_fp32(batch: dict) -> dict:
    """A batch with its floating tensors in fp32: a bf16 preset caches its features in bf16, and the fp32 step (or
    the FLOP count, without autocast) must not feed them to fp32 weights."""
    return {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in batch.items()}


class Bench:
    """The lynx model of a scale with random-init backbones, its finetune stream, and a warmed feature cache."""

    def __init__(self, scale: str, out: Path, cli: dict | None = None) -> None:
        from harness.data import WorldDataModule
        from harness.features import stage_features
        from harness.model import apply_freeze_policy
        from harness.placement import hold_frozen_in_training_dtype
        from harness.resolve import resolve
        from harness.runner import build_for, stage_image_size
        from harness.tracking import Store

        self.store = Store(out)
        self.client = self.store.client() if self.store.exists() else self.store.create()
        cli = {"model.llm.source": "random", "model.vision.weights": "random", **(cli or {})}
        self.cfg = resolve("lynx", scale, cli=cli).config
        assets, self.model_cfg, self.model = build_for(self.cfg, self.store)
        self.stage = self.cfg.train.finetune
        self.size = stage_image_size(self.cfg, self.stage)
        apply_freeze_policy(self.model, self.model_cfg, self.stage)
        hold_frozen_in_training_dtype(self.model, self.cfg.train.precision)
        make = lambda: WorldDataModule(assets.world, self.cfg.data, assets.tokenizer,  # noqa: E731
                                       image_size=self.size, batch_size=self.cfg.train.batch_size, seed=0)
        self.pixels, self.cached = make(), make()
        stage_features(self.store.cache / "features", self.model, self.cached, "finetune",
                       list(self.cached.mixture("finetune")), self.size, self.cfg.train.precision, True, False, False)

    def plain(self, data, steps: int, precision: str, pack: bool | None = None) -> list[float]:
        """Seconds per step of a plain AdamW loop (data fetch included), frozen weights held in `precision`'s dtype as
        the harness holds them, the LLM on packed rows unless `pack` is False (default: the preset's setting); the
        preset's dtypes are restored after."""
        pack = self.cfg.train.sequence_packing if pack is None else pack
        from harness.model.mllm import model_inputs
        from harness.placement import autocast_for, hold_frozen_in_training_dtype

        hold_frozen_in_training_dtype(self.model, precision)

        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4)
        times, batches = [], iter(data.stage_dataloader("finetune", self.size))
        for _ in range(steps):
            started = time.perf_counter()
            batch = next(batches)
            if precision == "32-true":
                batch = as_fp32(batch)
            with autocast_for(self.model, precision):
                loss = self.model(**model_inputs(batch), labels=batch["labels"], pack=pack).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - started)
        hold_frozen_in_training_dtype(self.model, self.cfg.train.precision)
        return times

    def harness(self, steps: int) -> tuple[list[float], list[float]]:
        """Seconds per step of the project's Lightning stage (MLflow on), and seconds of each waiting for data."""
        import lightning as L

        from harness.config.schema import StageConfig
        from harness.placement import stage_strategy
        from harness.training import MlflowMetrics, MultimodalModule

        class Clock(L.Callback):
            def __init__(self):
                self.steps, self.waits, self.last_end = [], [], None

            def on_train_batch_start(self, trainer, module, batch, idx):
                if self.last_end is not None:
                    self.waits.append(time.perf_counter() - self.last_end)
                self.start = time.perf_counter()

            def on_train_batch_end(self, trainer, module, outputs, batch, idx):
                now = time.perf_counter()
                if self.last_end is not None:
                    self.steps.append(now - self.last_end)
                self.last_end = now

        exp = self.client.get_experiment_by_name("bench") or None
        run = self.client.create_run(exp.experiment_id if exp else self.client.create_experiment("bench"))
        clock = Clock()
        stage = StageConfig(steps=steps + 1, lr=1e-4, resolution=self.stage.resolution)
        trainer = L.Trainer(max_steps=stage.steps, accelerator="cpu", devices=1, precision=self.cfg.train.precision,
                            strategy=stage_strategy("cpu", 1), logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False,
                            callbacks=[clock, MlflowMetrics(self.client, run.info.run_id, self.cfg.train.log_every)])
        trainer.fit(MultimodalModule(self.model, stage, self.cfg.train.weight_decay,
                                     pack=self.cfg.train.sequence_packing),
                    train_dataloaders=self.cached.stage_dataloader("finetune", self.size))
        # Lightning fetches the next batch after on_train_batch_end and before on_train_batch_start.
        return clock.steps, clock.waits

    def flops_per_step(self) -> float:
        from torch.utils.flop_counter import FlopCounterMode

        from harness.model.mllm import model_inputs
        from harness.placement import hold_frozen_in_training_dtype

        batch = next(iter(self.cached.stage_dataloader("finetune", self.size)))
        hold_frozen_in_training_dtype(self.model, "32-true")  # counted without autocast
        with FlopCounterMode(display=False) as counter:
            self.model(**model_inputs(as_fp32(batch)), labels=batch["labels"],
                       pack=self.cfg.train.sequence_packing).loss.backward()
        self.model.zero_grad(set_to_none=True)
        hold_frozen_in_training_dtype(self.model, self.cfg.train.precision)
        return float(counter.get_total_flops())


# What a scale's precision check changes so it fits a 2-core CPU: base's world at its own size would take days to
# render and its batch of 64 minutes a step; the model itself is unchanged, so the fp32/bf16 ratio is base's.
PRECISION_CHECK = {"base": {"world.num_images": 48, "world.num_noisy": 48, "world.num_videos": 8, "world.num_text": 48,
                            "world.samples_per_shard": 48, "train.batch_size": 2}}


def precision_by_scale(scales: list[str], out: Path, steps: int, rounds: int,
                       peaks: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per scale: the plain cached step in fp32 and in bf16 autocast (medians of interleaved rounds), their ratio, and
    each step's share of the matching matrix peak."""
    figures = {}
    for scale in scales:
        bench = Bench(scale, out / f"precision-{scale}", PRECISION_CHECK.get(scale))
        n = steps if scale != "base" else 4
        fp32, bf16 = [], []
        for _ in range(rounds):
            fp32 += bench.plain(bench.cached, n + 1, "32-true")[1:]
            bf16 += bench.plain(bench.cached, n + 1, "bf16-mixed")[1:]
        figures[scale] = precision_figures(bench, statistics.median(fp32), statistics.median(bf16),
                                           bench.flops_per_step(), peaks)
        del bench
    return figures


def precision_figures(bench: Bench, fp32_s: float, bf16_s: float, flops: float,
                      peaks: dict[str, float]) -> dict[str, float]:
    """One scale's precision figures: both step times, their ratio, and each one's share of its matrix peak."""
    return {"batch_size": bench.cfg.train.batch_size, "preset": bench.cfg.train.precision,
            "fp32_step_s": fp32_s, "bf16_step_s": bf16_s, "bf16_over_fp32": bf16_s / fp32_s, "flops_per_step": flops,
            "fp32_peak_share": flops / fp32_s / peaks["fp32"], "bf16_peak_share": flops / bf16_s / peaks["bf16"]}


def time_grid(experiment: str, scale: str, out: Path, seeds: str | None = "0") -> dict[str, float]:
    """Wall time of a grid (world and zoo built first, not counted; one seed unless `seeds` says otherwise) and its
    evaluation share: evaluation seconds over the seconds of every stage and evaluation of its runs. (A run's
    MLflow start time is when the grid scheduled it, not when a worker took it up, so its span would count the
    wait.)"""

    from harness.assets import prepare
    from harness.experiment import load_experiment
    from harness.grid import run_grid
    from harness.resolve import resolve
    from harness.tracking import Store, search_frame

    store = Store(out / "grid")
    store.create()
    exp = load_experiment(experiment, scale=scale, seeds=seeds)
    for variant in (exp.baseline, *exp.variants):
        prepare(resolve(variant, scale).config, store, zoo_workers=2)
    started = time.perf_counter()
    run_grid(exp, store)
    wall = time.perf_counter() - started
    runs = search_frame(store, exp.name, "tags.`ablate.kind` = 'run'")
    timed = [c for c in runs.columns if c.startswith("metrics.time/") and c.endswith("_s")]
    run_s = runs[timed].fillna(0).to_numpy().sum()
    return {"table3_s": wall, "eval_share": float(runs["metrics.time/eval_s"].sum() / run_s), "runs": len(runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="small")
    parser.add_argument("--steps", type=int, default=40, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of each measurement")
    parser.add_argument("--grid", default=None, help="also time this experiment's grid (e.g. "
                                                     "experiments/lynx_table3.yaml); slow: minutes")
    parser.add_argument("--grid-seeds", default="0", help="the grid's seeds (default: one seed, as the issue's "
                                                          "7-run Table 3 figure)")
    parser.add_argument("--out", default=None, help="output folder (default: a fresh temporary one)")
    parser.add_argument("--render", action="store_true", help="only redraw BENCHMARKS.md from benchmarks/latest.json")
    parser.add_argument("--precision-scales", default="tiny", help="also time fp32 against bf16 autocast at these "
                        "scales (comma-separated; tiny, small, base; --scale's own is always timed); '' for none")
    args = parser.parse_args()
    if args.render:
        (ROOT / "BENCHMARKS.md").write_text(render(json.loads((HERE / "latest.json").read_text()))[0])
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = Path(args.out or tempfile.mkdtemp(prefix="ablate-bench-"))
    from harness.runner import quiet_libraries

    quiet_libraries()
    bench = Bench(args.scale, out)
    plain, pixels, harness, waits, bf16, padded = [], [], [], [], [], []
    for _ in range(args.rounds):  # interleaved, so a neighbour's load hits every measurement alike
        plain += bench.plain(bench.cached, args.steps, "32-true")[5:]
        pixels += bench.plain(bench.pixels, args.steps, "32-true")[5:]
        steps, wait = bench.harness(args.steps)
        harness += steps[4:]
        waits += wait[4:]
        bf16 += bench.plain(bench.cached, args.steps, "bf16-mixed")[5:]
        padded += bench.plain(bench.cached, args.steps, "32-true", pack=False)[5:]
    med = statistics.median
    flops = bench.flops_per_step()
    peaks = {"bf16": matmul_peak(torch.bfloat16), "fp32": matmul_peak(torch.float32)}
    figures = {
        "scale": args.scale, "batch_size": bench.cfg.train.batch_size, "precision": bench.cfg.train.precision,
        "plain_step_s": med(plain), "harness_step_s": med(harness), "uncached_step_s": med(pixels),
        "bf16_step_s": med(bf16),
        "harness_over_plain": med(harness) / med(plain),
        "cache_speedup": med(pixels) / med(plain),
        "padded_step_s": med(padded), "packing_speedup": med(padded) / med(plain),
        "data_wait_share": sum(waits) / sum(harness),
        "data_wait_median_s": med(waits),
        "flops_per_step": flops, "flops_per_s": flops / med(plain),
        "bf16_peak_flops": peaks["bf16"], "fp32_peak_flops": peaks["fp32"],
        "mfu_vs_fp32_peak": flops / med(plain) / peaks["fp32"],
        "mfu_vs_bf16_peak": flops / med(plain) / peaks["bf16"],
        "bf16_over_fp32_step": med(bf16) / med(plain),
        "eval_share": None, "table3_small_s": None,
    }
    others = [s for s in args.precision_scales.split(",") if s.strip() and s.strip() != args.scale]
    figures["precision_by_scale"] = {args.scale: precision_figures(bench, med(plain), med(bf16), flops, peaks),
                                     **precision_by_scale([s.strip() for s in others], out, args.steps, args.rounds,
                                                          peaks)}
    if args.grid:
        grid = time_grid(args.grid, args.scale, out, args.grid_seeds)
        figures["eval_share"] = grid["eval_share"]
        figures[f"table3_{args.scale}_s"] = grid["table3_s"]
        figures["grid_runs"] = grid["runs"]
        figures["grid"] = args.grid
    else:
        figures.update(earlier_grid(args.scale))
    write(figures, args)


def earlier_grid(scale: str) -> dict:
    """The grid figures of the last run that timed one at this scale (benchmarks/latest.json), with its date, so a
    run without --grid keeps them, marked as earlier, instead of writing n/a over them."""
    path = HERE / "latest.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    if earlier.get("scale") != scale or earlier.get(f"table3_{scale}_s") is None:
        return {}
    return {"eval_share": earlier["eval_share"], f"table3_{scale}_s": earlier[f"table3_{scale}_s"],
            "grid_runs": earlier.get("grid_runs"), "grid": earlier.get("grid", "experiments/lynx_table3.yaml"),
            "grid_measured": earlier.get("grid_measured", earlier["when"])}


def verdict(key: str, value) -> str:
    if key not in GOALS or value is None:
        return "not measured (needs --grid)" if key in GOALS else ""
    op, goal = GOALS[key]
    ok = {"<=": value <= goal, ">=": value >= goal, "<": value < goal}[op]
    return f"goal {op} {goal:g}: {'met' if ok else 'MISSED'}"


def what_limits(scale: str, p: dict) -> str:
    """One sentence on what bounds a scale's step (from its share of the fp32 matrix peak) and what bf16 does."""
    share, ratio = p["fp32_peak_share"], p["bf16_over_fp32"]
    bound = ("its matrices are too small to keep the matrix units busy, so per-operator overhead and memory traffic "
             "bound it" if share < 0.25 else "matrix products and per-operator overhead share it" if share < 0.6
             else "the matrix products bound it")
    bf16 = (f"bf16 autocast runs it at about the same speed ({ratio:.2f}x the fp32 time)" if abs(ratio - 1) < 0.05
            else f"bf16 autocast's casts cost more than its faster products save ({ratio:.2f}x the fp32 time)"
            if ratio > 1 else f"bf16 autocast runs it {1 / ratio:.1f}x faster")
    return f"At `{scale}` a step reaches {share:.0%} of the fp32 matrix peak in fp32: {bound}; {bf16}."


def precision_advice(p: dict) -> str:
    """What a scale's measured fp32/bf16 ratio says about its preset's precision."""
    faster = "bf16-mixed" if p["bf16_over_fp32"] < 1 else "32-true"
    if abs(p["bf16_over_fp32"] - 1) < 0.05:
        return f"a tie (within 5 %): the preset's `{p['preset']}` stays"
    if p["preset"] == faster:
        return f"the preset's `{p['preset']}` is the faster here"
    return f"`{faster}` is the faster on this CPU; the preset keeps `{p['preset']}` (a GPU scale)" \
        if p["preset"] == "bf16-mixed" else f"`{faster}` is the faster here: the preset should change"


def write(figures: dict, args) -> None:
    """benchmarks/latest.json, BENCHMARKS.md and a RESULTS.md entry from one run's figures."""
    record = {"when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": f"{os.cpu_count()} cores, {platform.machine()}, torch {torch.__version__}",
              "command": f"python benchmarks/bench.py --scale {args.scale} --steps {args.steps} --rounds {args.rounds}"
                         + (f" --grid {args.grid} --grid-seeds {args.grid_seeds}" if args.grid else "")
                         + f" --precision-scales '{args.precision_scales}'",
              **figures}
    (HERE / "latest.json").write_text(json.dumps(record, indent=1) + "\n")
    text, rows = render(record)
    (ROOT / "BENCHMARKS.md").write_text(text)
    with (HERE / "RESULTS.md").open("a") as handle:
        handle.write(f"\n## {record['when']}, `{record['command']}`\n\n" + "\n".join(f"- {a}: {b}" for a, b, _ in rows)
                     + "\n")
    print(text)


def render(f: dict) -> tuple[str, list[tuple[str, str, str]]]:
    """BENCHMARKS.md's text and its table rows (figure, value, goal) from a latest.json record; `python
    benchmarks/bench.py --render` redraws the page from benchmarks/latest.json without measuring."""
    scale = f["scale"]
    rows = [
        ("harness step over plain loop (MLflow on, cached)", f"{f['harness_over_plain']:.3f} "
         f"({f['harness_step_s'] * 1e3:.0f} vs {f['plain_step_s'] * 1e3:.0f} ms)",
         verdict("harness_over_plain", f["harness_over_plain"])),
        ("cached over uncached step", f"{f['cache_speedup']:.2f}x ({f['uncached_step_s'] * 1e3:.0f} -> "
         f"{f['plain_step_s'] * 1e3:.0f} ms)", verdict("cache_speedup", f["cache_speedup"])),
        *([("padded over packed step (train.sequence_packing)", f"{f['packing_speedup']:.2f}x "
             f"({f['padded_step_s'] * 1e3:.0f} -> {f['plain_step_s'] * 1e3:.0f} ms)", "")]
          if f.get("packing_speedup") else []),
        ("share of a harness step waiting for data", f"{f['data_wait_share']:.1%} (median wait "
         f"{f['data_wait_median_s'] * 1e3:.1f} ms)", verdict("data_wait_share", f["data_wait_share"])),
        ("model FLOP/s", f"{f['flops_per_s'] / 1e9:.1f} GFLOP/s = {f['mfu_vs_fp32_peak']:.1%} of the fp32 and "
         f"{f['mfu_vs_bf16_peak']:.1%} of the bf16 matrix peak ({f['fp32_peak_flops'] / 1e9:.0f} / "
         f"{f['bf16_peak_flops'] / 1e9:.0f} GFLOP/s at 2048^3); {f['flops_per_step'] / 1e9:.2f} GFLOP a step", ""),
        ("evaluation share of a run's wall time" + (f" (measured {f['grid_measured']} with the grid)"
                                                    if f.get("grid_measured") else ""),
         "n/a" if f["eval_share"] is None else f"{f['eval_share']:.1%}",
         verdict("eval_share", f["eval_share"])),
        *[(f"at `{name}` (batch {p['batch_size']}, preset `{p['preset']}`): bf16 autocast over fp32 step",
           f"{p['bf16_over_fp32']:.2f} ({p['bf16_step_s'] * 1e3:.0f} vs {p['fp32_step_s'] * 1e3:.0f} ms; "
           f"{p['fp32_peak_share']:.1%} of the fp32 peak in fp32, {p['bf16_peak_share']:.1%} of the bf16 peak in bf16)",
           precision_advice(p)) for name, p in f["precision_by_scale"].items()],
        (f"grid {f.get('grid') or '(none)'} at {scale} ({f.get('grid_runs', 'no')} runs, world and zoo prebuilt)"
         + (f"; measured {f['grid_measured']}, not by this command" if f.get("grid_measured") else ""),
         "n/a" if f.get(f"table3_{scale}_s") is None else f"{f[f'table3_{scale}_s']:.0f} s",
         verdict("table3_small_s", f.get("table3_small_s"))),
    ]
    limit = " ".join(what_limits(name, p) for name, p in f["precision_by_scale"].items())
    lines = [f"# Benchmarks ({f['when']})", "", f"Machine: {f['machine']}. Command: `{f['command']}`.", "",
             f"Scale `{scale}`, batch {f['batch_size']}, preset precision `{f['precision']}`, lynx, finetune "
             "stage, random-init backbones. Every figure is a median of interleaved rounds or a ratio of two such "
             "medians measured in the same process. bf16 autocast is timed as the harness runs it: frozen weights "
             "held in bf16, trainable ones in fp32.", "",
             "| figure | value | goal |", "| --- | --- | --- |", *[f"| {a} | {b} | {c} |" for a, b, c in rows], "",
             limit, "", "Machine-readable: benchmarks/latest.json. History: benchmarks/RESULTS.md.", ""]
    return "\n".join(lines), rows


if __name__ == "__main__":
    main()

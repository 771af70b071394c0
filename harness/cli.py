"""The `ablate` command line: variants, grids, reports and the MLflow UI over one output folder."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from harness.errors import AblateError, Interrupted

DEFAULT_OUT = os.environ.get("ABLATE_OUT", "outputs")
ASSUMED_VOCAB = 1000  # for parameter counts when the vocabulary comes from the world tokenizer at run time


def _store(args):
    from harness.tracking import Store

    return Store(Path(args.out), remote=getattr(args, "tracking_uri", None))


def _no_reuse(parser) -> None:
    """`--no-reuse`: train a run here even when another experiment of the output folder finished it."""
    parser.add_argument("--no-reuse", action="store_true",
                        help="train here even a run another experiment of the output folder finished (by default "
                             "it is copied: same run key, same training)")


def _shared_server(parser) -> None:
    """`--tracking-uri`: several machines work on one grid through one MLflow tracking server."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "")
    parser.add_argument("--tracking-uri", default=env if env.startswith(("http://", "https://")) else None,
                        metavar="URI", help="an MLflow tracking server (e.g. http://host:5000; default: "
                        "$MLFLOW_TRACKING_URI when it is one) shared by grids on several machines: each run is "
                        "claimed atomically through it, so it executes once; without it, the output folder's store")


def cmd_variants_list(args) -> int:
    from harness.variant import catalogue

    variants = catalogue().values()
    width = max(len(v.name) for v in variants)
    axis_width = max(len(v.axis) for v in variants)
    for v in sorted(variants, key=lambda v: (v.baseline is not None, v.axis, v.name)):
        print(f"{v.name:<{width}}  {v.axis:<{axis_width}}  {v.description}")
    return 0


def cmd_variants_show(args) -> int:
    import dataclasses

    import yaml

    from harness.config.files import parse_overrides
    from harness.resolve import resolve

    run = resolve(args.name, args.scale, args.seed, cli=parse_overrides(args.overrides))
    v = run.variant
    print(f"# variant {v.name} ({v.axis}) at scale {args.scale}, seed {args.seed}: config hash {run.hash}")
    print(f"# {v.description}" + (f" [paper: {v.paper}]" if v.paper else ""))
    print(f"# defined in {v.source}; baseline: {v.baseline or '(none: this is a root)'}")
    print(yaml.safe_dump(dataclasses.asdict(run.config), sort_keys=False), end="")
    print(f"# parameters at scale {args.scale} (built on the meta device: no weights, no memory)")
    for line in _parameter_lines(run.config):
        print(f"#   {line}")
    return 0


def _parameter_lines(config) -> list[str]:
    from harness.model import parameter_report

    vocab = config.model.llm.vocab_size or ASSUMED_VOCAB
    rows = parameter_report(config.model, vocab, stage=config.train.finetune)
    lines = [f"{r['component']:<10} {r['params'] / 1e6:12.2f}M   trainable in finetuning: "
             f"{r['trainable_params'] / 1e6:10.2f}M" for r in rows]
    total, trainable = sum(r["params"] for r in rows), sum(r["trainable_params"] for r in rows)
    lines.append(f"{'total':<10} {total / 1e6:12.2f}M   trainable in finetuning: {trainable / 1e6:10.2f}M")
    if not config.model.llm.vocab_size:
        lines.append(f"(vocabulary: the world tokenizer's at run time; {vocab} assumed for this count)")
    return lines


def cmd_variants_params(args) -> int:
    from harness.model import parameter_report
    from harness.resolve import resolve
    from harness.variant import catalogue

    print(f"{'variant':<24} {'total':>10} {'trainable':>10}   (scale {args.scale}, finetuning stage, meta device)")
    for name in sorted(catalogue(), key=lambda n: (n != "lynx", n)):
        config = resolve(name, args.scale).config
        rows = parameter_report(config.model, config.model.llm.vocab_size or ASSUMED_VOCAB, stage=config.train.finetune)
        total, trainable = sum(r["params"] for r in rows), sum(r["trainable_params"] for r in rows)
        print(f"{name:<24} {_count(total):>10} {_count(trainable):>10}")
    return 0


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def cmd_variants_diff(args) -> int:
    from harness.config.validate import to_flat_dict
    from harness.resolve import changed_keys, resolve

    run = resolve(args.name, args.scale)
    if run.variant.baseline is None:
        print(f"{args.name} is a root baseline: it has no delta")
        return 0
    base = resolve(run.variant.baseline, args.scale)
    new, old = to_flat_dict(run.config), to_flat_dict(base.config)
    changed = changed_keys(run, base)
    print(f"{args.name} vs {run.variant.baseline} at scale {args.scale} ({run.variant.axis}):")
    width = max((len(k) for k in changed), default=0)
    for key in changed:
        print(f"  {key:<{width}}  {old.get(key, '(none)')!r} -> {new.get(key, '(none)')!r}")
    if not changed:
        print("  (no differences)")
    return 0


def cmd_grid_run(args) -> int:
    from harness.config.files import parse_overrides
    from harness.experiment import load_experiment
    from harness.grid import run_grid

    experiment = load_experiment(args.experiment, scale=args.scale, workers=args.workers, seeds=args.seeds)
    store = _store(args)
    best = None
    if args.from_sweep:
        from harness.sweep import best_settings, settings_text

        best = best_settings(experiment, store, args.storage)
        for variant, settings in best.items():
            print(f"{variant}: its best sweep settings, {settings_text(settings)}")
    outcome = run_grid(experiment, store, parse_overrides(args.overrides), retry_failed=args.retry_failed,
                       per_variant=best, reuse=not args.no_reuse)
    print(
        f"{experiment.name}: {len(outcome.finished)} ran, "
        + (f"{len(outcome.rescored)} scored again (evaluation changed), " if outcome.rescored else "")
        + f"{_skipped_text(outcome)}, {len(outcome.busy)} busy elsewhere, "
        f"{len(outcome.failed)} failed; store: {args.out}"
    )
    for name, reason in outcome.failed.items():
        print(f"  failed: {name}: {reason}", file=sys.stderr)
    return 0 if outcome.ok else 1


def _skipped_text(outcome) -> str:
    """'3 skipped (already finished; 2 of them copied from other experiments)'."""
    copied = sum(label in outcome.copied for label in outcome.skipped)
    return (f"{len(outcome.skipped)} skipped (already finished"
            + (f"; {copied} of them copied from other experiments" if copied else "") + ")")


def cmd_grid_submit(args) -> int:
    from harness.config.files import parse_overrides
    from harness.experiment import load_experiment
    from harness.grid import submit_grid

    experiment = load_experiment(args.experiment, scale=args.scale, seeds=args.seeds)
    outcome = submit_grid(experiment, _store(args), parse_overrides(args.overrides), executor=args.executor,
                          wait=not args.no_wait, retry_failed=args.retry_failed, timeout_min=args.timeout_min,
                          partition=args.partition, reuse=not args.no_reuse)
    print(f"{experiment.name}: {len(outcome.submitted)} submitted, {len(outcome.finished)} ran, "
          f"{_skipped_text(outcome)}, {len(outcome.failed)} failed; store: {args.out}")
    for name, reason in outcome.failed.items():
        print(f"  failed: {name}: {reason}", file=sys.stderr)
    return 0 if outcome.ok else 1


def cmd_run(args) -> int:
    """One variant, no experiment file: a grid of one run named `run-VARIANT`, logged and skipped like any other."""
    from harness.config.files import parse_overrides
    from harness.experiment import Experiment
    from harness.grid import run_grid
    from harness.resolve import resolve

    scale = args.scale or "tiny"
    resolve(args.variant, scale, args.seed)  # an unknown variant or scale fails here, with its suggestion
    experiment = Experiment(name=f"run-{args.variant}", path=Path(f"ablate run {args.variant}"), scale=scale,
                            baseline=args.variant, variants=(), seeds=(args.seed,))
    outcome = run_grid(experiment, _store(args), parse_overrides(args.overrides), retry_failed=args.retry_failed,
                       reuse=not args.no_reuse)
    state = ("failed" if outcome.failed else "scored again (evaluation settings changed; not retrained)"
             if outcome.rescored else "copied from another experiment of the output folder (trained there)"
             if outcome.copied else "skipped (already finished)" if outcome.skipped else "done")
    print(f"{args.variant} at {scale}, seed {args.seed}: {state}; MLflow experiment '{experiment.name}' in "
          f"{args.out} (`ablate ui` to browse)")
    for name, reason in outcome.failed.items():
        print(f"  failed: {name}: {reason}", file=sys.stderr)
    return 0 if outcome.ok else 1


def cmd_components_list(args) -> int:
    """Every component kind with each entry's source; a plugin that fails to load is listed with its error."""
    from harness.components import registries

    for key, registry in registries().items():
        print(f"{registry.kind} ({key}; plugins: entry-point group {registry.group})")
        width = max(len(n) for n in registry.names())
        for name in registry.names():
            origin = registry.origin(name)
            problem = registry.check(name) if origin.kind == "plugin" else None
            print(f"  {name:<{width}}  {origin.text()}" + (f"  BROKEN: {problem}" if problem else ""))
    return 0


def cmd_grid_status(args) -> int:
    from harness.config.files import parse_overrides
    from harness.experiment import load_experiment
    from harness.grid import grid_status

    experiment = load_experiment(args.experiment, scale=args.scale, seeds=args.seeds)
    lines = grid_status(experiment, _store(args), parse_overrides(args.overrides))
    width = max(len(name) for name, _ in lines)
    for name, state in lines:
        print(f"{name:<{width}}  {state}")
    counts = {}
    for _, state in lines:
        kind = state.split(":")[0].split(" ")[0]
        counts[kind] = counts.get(kind, 0) + 1
    print(f"{experiment.name}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return 0


def cmd_sweep_run(args) -> int:
    from harness.config.files import parse_overrides
    from harness.experiment import load_experiment
    from harness.sweep import format_summaries, run_sweep

    experiment = load_experiment(args.experiment, scale=args.scale)
    summaries = run_sweep(experiment, _store(args), args.trials, parse_overrides(args.overrides), args.storage)
    for line in format_summaries(summaries, experiment.search.metric):
        print(line)
    return 0


def cmd_sweep_status(args) -> int:
    from harness.experiment import load_experiment
    from harness.sweep import format_summaries, sweep_status

    experiment = load_experiment(args.experiment)
    for line in format_summaries(sweep_status(experiment, _store(args), args.storage), experiment.search.metric):
        print(line)
    return 0


def cmd_report(args) -> int:
    from harness.experiment import load_experiment
    from reports import write_report

    path = write_report(load_experiment(args.experiment), _store(args))
    print(path)
    return 0


def cmd_world_build(args) -> int:
    from harness.data import build_tokenizer, build_world
    from harness.resolve import resolve

    config = resolve("lynx", args.scale).config
    store = _store(args)
    world = build_world(config.world, store.cache)
    tokenizer = build_tokenizer(world)
    print(f"world {world.manifest['hash']} at {world.path} (vocabulary {len(tokenizer)})")
    for name, count in sorted(world.manifest.get("counts", {}).items()):
        print(f"  {name:<22} {count}")
    return 0


def cmd_zoo_build(args) -> int:
    from harness.assets import ensure_zoo
    from harness.data import build_tokenizer, build_world
    from harness.resolve import resolve
    from harness.zoo import describe_zoo

    config = resolve("lynx", args.scale).config
    store = _store(args)
    store.create()
    world = build_world(config.world, store.cache)
    folder = ensure_zoo(config, store, world, build_tokenizer(world), force=args.force, workers=2)
    print(f"zoo for scale {args.scale} at {folder}")
    for line in describe_zoo(folder):
        print(f"  {line}")
    return 0


def cmd_zoo_probe(args) -> int:
    from harness.assets import ensure_zoo
    from harness.data import build_tokenizer, build_world
    from harness.data.shards import iter_samples
    from harness.model.vision import VisionEncoder
    from harness.resolve import resolve
    from harness.zoo import resolve_source
    from harness.zoo.probe import format_probe, probe_encoder

    sizes = {entry: {"vit-large": "large", "vit-small": "small"}.get(entry) for entry in args.entries.split(",")}
    for entry, size in sizes.items():  # before anything is built or written
        if size is None:
            raise AblateError(f"zoo probe: '{entry}' is not a vision entry; use vit-large or vit-small")
    store = _store(args)
    store.create()
    config = resolve("lynx", args.scale).config
    world = build_world(config.world, store.cache)
    tokenizer = build_tokenizer(world)
    images, scenes = [], []
    for sample in iter_samples(world.shards("captions")):
        if len(images) >= args.images:
            break
        images.append(sample["images"][0])
        scenes.append(sample["json"]["scene"])
    for entry, size in sizes.items():
        vision = resolve("lynx", args.scale, cli={"model.vision.size": size}).config.model.vision
        folder = ensure_zoo(config, store, world, tokenizer, entries={entry}, workers=2)
        encoder = VisionEncoder(vision, resolve_source(f"zoo:{entry}", folder))
        results = {s: probe_encoder(encoder, images, scenes, s) for s in (vision.image_size, vision.high_res_size)}
        print(f"{entry} ({args.scale}), linear probes on {len(images)} caption images, 25% held out:")
        for line in format_probe(results):
            print(f"  {line}")
    return 0


def cmd_eval(args) -> int:
    from harness.evaluation import format_category_table, get_split
    from harness.rescore import evaluate_saved

    metrics, rows = evaluate_saved(_store(args), args.target, blind=args.blind, splits=args.splits,
                                   judge=args.judge, benchmark_scale=args.benchmark_scale)
    tabled = {split for split in {r["split"] for r in rows} if get_split(split).kind == "openvqa"}
    for split in sorted(tabled):
        print(format_category_table(rows, split))
    for key in sorted(k for k in metrics if k.split("/")[1] not in tabled):
        print(f"{key:<48} {metrics[key]:.2f}")
    return 0


def cmd_ui(args) -> int:
    store = _store(args)
    if not store.exists():
        raise AblateError(f"no MLflow store at {store.root}; run `ablate grid run` first or pass --out")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store.tracking_uri,
               "--default-artifact-root", store.artifact_root, "--host", args.host, "--port", str(args.port)]
    print(f"MLflow UI on http://{args.host}:{args.port} over {store.root} (Ctrl-C to stop)", flush=True)
    os.execv(sys.executable, command)  # become the server, so signals reach it directly and nothing is orphaned


def thread_count(text: str) -> int:
    """`--threads` / $ABLATE_THREADS: a whole number of at least 1."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of threads: give a whole number of at least 1, "
                                         f"e.g. --threads 1 (this machine has {os.cpu_count()} cores)")
    return n


def use_threads(n: int) -> None:
    """Set torch's thread count here and, through $ABLATE_THREADS, in the grid workers this process starts."""
    import torch

    os.environ["ABLATE_THREADS"] = str(n)
    torch.set_num_threads(n)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ablate",
        description="Controlled ablation studies of multimodal LLMs: variants -> grids -> MLflow -> reports.",
    )
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="output folder holding the MLflow store, data cache and reports (default: %(default)s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only print results and errors")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also print each stage's freeze table and feature-cache use (always in MLflow)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of any error")
    parser.add_argument("--threads", type=thread_count, default=os.environ.get("ABLATE_THREADS") or None,
                        metavar="N", help="torch threads of this process, and of each grid worker (default: "
                        "$ABLATE_THREADS, else every core for one process and cores / workers for a grid's workers). "
                        "Running several ablate commands at once on one machine, give each its share: two "
                        "evaluations side by side on 2 cores with 2 threads each took 3-10x as long as with 1")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    variants = sub.add_parser("variants", help="list, show and compare registered variants")
    vsub = variants.add_subparsers(dest="action", required=True, metavar="ACTION")
    vsub.add_parser("list", help="registered variants with axis and description").set_defaults(func=cmd_variants_list)
    show = vsub.add_parser("show", help="the resolved config of a variant")
    show.add_argument("name")
    show.add_argument("--scale", default="tiny")
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=1e-4")
    show.set_defaults(func=cmd_variants_show)
    diff = vsub.add_parser("diff", help="what a variant changes relative to its baseline")
    diff.add_argument("name")
    diff.add_argument("--scale", default="tiny")
    diff.set_defaults(func=cmd_variants_diff)
    params = vsub.add_parser("params", help="parameter counts of every variant at a scale (meta device)")
    params.add_argument("--scale", default="paper")
    params.set_defaults(func=cmd_variants_params)

    components = sub.add_parser("components", help="connectors, fusions, adapters and judges, with their source")
    csub = components.add_subparsers(dest="action", required=True, metavar="ACTION")
    csub.add_parser("list", help="every registered component and where it comes from (built-in or plugin)"
                    ).set_defaults(func=cmd_components_list)

    world = sub.add_parser("world", help="the generated miniature world")
    wsub = world.add_subparsers(dest="action", required=True, metavar="ACTION")
    wbuild = wsub.add_parser("build", help="generate (or reuse) the world's shards and tokenizer for a scale")
    wbuild.add_argument("--scale", default="tiny")
    wbuild.set_defaults(func=cmd_world_build)

    zoo = sub.add_parser("zoo", help="the miniature backbone zoo")
    zsub = zoo.add_subparsers(dest="action", required=True, metavar="ACTION")
    zbuild = zsub.add_parser("build", help="pretrain (or reuse) the zoo's LMs and ViTs for a scale")
    zbuild.add_argument("--scale", default="tiny")
    zbuild.add_argument("--force", action="store_true", help="rebuild even if a complete zoo exists")
    zbuild.set_defaults(func=cmd_zoo_build)
    zprobe = zsub.add_parser("probe", help="linear probes: what a zoo vision encoder can read, at both resolutions")
    zprobe.add_argument("--scale", default="tiny")
    zprobe.add_argument("--entries", default="vit-large", help="comma-separated: vit-large, vit-small")
    zprobe.add_argument("--images", type=int, default=2000, help="caption images to probe on (default %(default)s)")
    zprobe.set_defaults(func=cmd_zoo_probe)

    evaluate = sub.add_parser("eval", help="score a finished run (MLflow run id) or a checkpoint folder again")
    evaluate.add_argument("target", metavar="RUN_OR_CHECKPOINT")
    evaluate.add_argument("--blind", action="store_true", help="replace every image by a blank (the control)")
    evaluate.add_argument("--splits", default=None, help="comma-separated benchmark splits (default: the run's)")
    evaluate.add_argument("--judge", default=None,
                          help="judge the answers with this judge (`ablate components list`); alone, it re-judges "
                               "the run's saved predictions without generating them again")
    evaluate.add_argument("--benchmark-scale", type=int, default=None, metavar="N",
                          help="score on the run's world built with N times the benchmark (10 adds the 3,020-item "
                               "openvqa_image_10x split): more items, narrower intervals, no retraining")
    evaluate.set_defaults(func=cmd_eval)

    quick = sub.add_parser("run", help="train and evaluate one variant, no experiment file (a re-run is skipped)")
    quick.add_argument("variant")
    quick.add_argument("--scale", default=None, help="scale preset (default: tiny)")
    quick.add_argument("--seed", type=int, default=0)
    quick.add_argument("--retry-failed", action="store_true", help="run it again if it failed before")
    _no_reuse(quick)
    quick.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=1e-4")
    quick.set_defaults(func=cmd_run)

    grid = sub.add_parser("grid", help="run an experiment grid")
    gsub = grid.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = gsub.add_parser("run", help="train and evaluate every missing run of an experiment file")
    run.add_argument("experiment", help="experiment YAML, e.g. experiments/smoke.yaml")
    run.add_argument("--scale", default=None, help="override the experiment's scale")
    run.add_argument("--workers", type=int, default=None, help="parallel worker processes")
    run.add_argument("--seeds", default=None, help="override the experiment's seeds, e.g. 0,1")
    run.add_argument("--retry-failed", action="store_true", help="run failed runs again (killed ones always are)")
    _no_reuse(run)
    run.add_argument("--from-sweep", action="store_true",
                     help="train each variant at its own best settings from `ablate sweep run` (the report lists them "
                          "among each variant's differences from the baseline)")
    run.add_argument("--storage", default=None, metavar="URL", help="with --from-sweep: the sweep's Optuna storage "
                     "URL, if not the journal under --out")
    run.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides applied to every run")
    _shared_server(run)
    run.set_defaults(func=cmd_grid_run)
    submit = gsub.add_parser("submit", help="send one cluster job per pending run (submitit: SLURM or local)")
    submit.add_argument("experiment", help="experiment YAML, e.g. experiments/lynx_table3.yaml")
    submit.add_argument("--executor", choices=("slurm", "local"), default="slurm",
                        help="slurm (sbatch) or local (jobs as local processes; for trying it out)")
    submit.add_argument("--scale", default=None, help="override the experiment's scale")
    submit.add_argument("--seeds", default=None, help="override the experiment's seeds, e.g. 0,1")
    submit.add_argument("--partition", default=None, help="SLURM partition")
    submit.add_argument("--timeout-min", type=int, default=24 * 60, help="job time limit in minutes")
    submit.add_argument("--no-wait", action="store_true", help="return once submitted (check with `grid status`)")
    submit.add_argument("--retry-failed", action="store_true", help="submit failed runs again")
    _no_reuse(submit)
    submit.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides applied to every run")
    _shared_server(submit)
    submit.set_defaults(func=cmd_grid_submit)
    status = gsub.add_parser("status", help="one line per run: pending, running (stage, step), done, failed, killed")
    status.add_argument("experiment", help="experiment YAML, e.g. experiments/smoke.yaml")
    status.add_argument("--scale", default=None, help="the scale the grid was run at, if not the file's")
    status.add_argument("--seeds", default=None, help="the seeds the grid was run with, if not the file's")
    status.add_argument("overrides", nargs="*", metavar="key=value", help="the overrides the grid was run with")
    _shared_server(status)
    status.set_defaults(func=cmd_grid_status)

    sweep = sub.add_parser("sweep", help="tune the settings an experiment's search: block declares (Optuna)")
    ssub = sweep.add_subparsers(dest="action", required=True, metavar="ACTION")
    srun = ssub.add_parser("run", help="bring each variant's study to N finished trials (a re-run continues)")
    srun.add_argument("experiment", help="experiment YAML with a search: block")
    srun.add_argument("--trials", type=int, required=True, help="finished (complete or pruned) trials per variant")
    srun.add_argument("--scale", default=None, help="override the experiment's scale")
    srun.add_argument("--storage", default=None, metavar="URL",
                      help="Optuna storage URL (an RDB for a cluster); default: a journal file under --out/optuna")
    srun.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides applied to every trial")
    srun.set_defaults(func=cmd_sweep_run)
    sstatus = ssub.add_parser("status", help="each variant's study: trials by state, the best value and settings")
    sstatus.add_argument("experiment", help="experiment YAML with a search: block")
    sstatus.add_argument("--storage", default=None, metavar="URL", help="the Optuna storage URL, if not the journal")
    sstatus.set_defaults(func=cmd_sweep_status)

    report = sub.add_parser("report", help="write the report of an experiment (markdown, HTML, CSV, LaTeX) from MLflow")
    report.add_argument("experiment")
    report.add_argument("--tracking-uri", default=None, metavar="URI",
                        help="read the runs from this MLflow tracking server (e.g. http://host:5000) instead of the "
                             "output folder's store; the report is still written under --out")
    report.set_defaults(func=cmd_report, one_shot=True)

    ui = sub.add_parser("ui", help="serve the MLflow UI over the output folder's store")
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s, local only)")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=cmd_ui)
    return parser


def main(argv: list[str] | None = None, process_ends: bool = False) -> int:
    """Run one `ablate` command; user errors print one line and return 2. `process_ends`: the process exits after
    this command (the console script), so a one-shot command may run without the cycle collector."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' per-checkpoint bars, in workers too
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per artifact the report reads
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `key=value` overrides may follow options (`grid run exp.yaml --workers 2 train.lr=1e-4`); argparse alone
    # stops collecting positionals at the first option, so gather the rest here.
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.verbose:
        os.environ["ABLATE_VERBOSE"] = "1"  # grid workers are separate processes
    if args.threads:  # argparse checks an $ABLATE_THREADS default with `thread_count` too
        use_threads(args.threads)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    logging.getLogger("ablate").setLevel(logging.DEBUG if args.verbose else logging.NOTSET)
    for noisy in ("alembic", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if process_ends and getattr(args, "one_shot", False):
        # A one-shot command (the report) allocates a great deal (imports, MLflow's ORM rows, per-item frames) and
        # keeps nearly all of it to the end: the cycle collector's passes cost about a second of a 100-run report
        # and freed nothing (peak memory the same with and without them; benchmarks/RESULTS.md).
        import gc

        gc.disable()
    try:
        return args.func(args)
    except Interrupted as err:
        print(f"ablate: {err}", file=sys.stderr)
        return 130
    except AblateError as err:
        if args.debug:
            raise
        print(f"ablate: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("ablate: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ablate ... | head`: stop quietly, and let Python's exit flush go nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:  # a bug, not a bad input: one line, the traceback only on request
        if args.debug:
            raise
        print(f"ablate: internal error: {type(err).__name__}: {err} (run again with --debug for the traceback, "
              "and please report it)", file=sys.stderr)
        return 1


def entry() -> None:
    """The `ablate` console script: `main`, then exit without the interpreter's last cycle collection, which
    scans every object the command left (about 0.6 s after a report) only to free them as the process ends."""
    code = main(process_ends=True)
    import gc

    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()

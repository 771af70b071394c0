"""The `ablate` command line: variants, grids, reports and the MLflow UI over one output folder."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from harness.errors import AblateError

DEFAULT_OUT = os.environ.get("ABLATE_OUT", "outputs")


def _store(args):
    from harness.tracking import Store

    return Store(Path(args.out))


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
    from harness.config.resolve import resolve

    run = resolve(args.name, args.scale, args.seed, cli=parse_overrides(args.overrides))
    v = run.variant
    print(f"# variant {v.name} ({v.axis}) at scale {args.scale}, seed {args.seed}: config hash {run.hash}")
    print(f"# {v.description}" + (f" [paper: {v.paper}]" if v.paper else ""))
    print(f"# defined in {v.source}; baseline: {v.baseline or '(none: this is a root)'}")
    print(yaml.safe_dump(dataclasses.asdict(run.config), sort_keys=False), end="")
    return 0


def cmd_variants_diff(args) -> int:
    from harness.config.resolve import LABEL_KEYS, resolve
    from harness.config.validate import to_flat_dict

    run = resolve(args.name, args.scale)
    if run.variant.baseline is None:
        print(f"{args.name} is a root baseline: it has no delta")
        return 0
    base = resolve(run.variant.baseline, args.scale)
    new, old = to_flat_dict(run.config), to_flat_dict(base.config)
    changed = [k for k in new if new[k] != old[k] and k not in LABEL_KEYS]
    print(f"{args.name} vs {run.variant.baseline} at scale {args.scale} ({run.variant.axis}):")
    width = max((len(k) for k in changed), default=0)
    for key in changed:
        print(f"  {key:<{width}}  {old[key]!r} -> {new[key]!r}")
    if not changed:
        print("  (no differences)")
    return 0


def cmd_grid_run(args) -> int:
    from harness.config.files import parse_overrides
    from harness.experiment import load_experiment
    from harness.grid import run_grid

    experiment = load_experiment(args.experiment, scale=args.scale, workers=args.workers)
    outcome = run_grid(experiment, _store(args), parse_overrides(args.overrides))
    print(
        f"{experiment.name}: {len(outcome.finished)} ran, {len(outcome.skipped)} skipped (already finished), "
        f"{len(outcome.busy)} busy elsewhere, {len(outcome.failed)} failed; store: {args.out}"
    )
    for name, reason in outcome.failed.items():
        print(f"  failed: {name}: {reason}", file=sys.stderr)
    return 0 if outcome.ok else 1


def cmd_report(args) -> int:
    from harness.experiment import load_experiment
    from reports import write_report

    path = write_report(load_experiment(args.experiment), _store(args))
    print(path)
    return 0


def cmd_ui(args) -> int:
    store = _store(args)
    if not store.exists():
        raise AblateError(f"no MLflow store at {store.root}; run `ablate grid run` first or pass --out")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store.tracking_uri,
               "--default-artifact-root", store.artifact_root, "--host", args.host, "--port", str(args.port)]
    print(f"MLflow UI on http://{args.host}:{args.port} over {store.root} (Ctrl-C to stop)", flush=True)
    os.execv(sys.executable, command)  # become the server, so signals reach it directly and nothing is orphaned


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ablate",
        description="Controlled ablation studies of multimodal LLMs: variants -> grids -> MLflow -> reports.",
    )
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="output folder holding the MLflow store, data cache and reports (default: %(default)s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only print results and errors")
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

    grid = sub.add_parser("grid", help="run an experiment grid")
    gsub = grid.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = gsub.add_parser("run", help="train and evaluate every missing run of an experiment file")
    run.add_argument("experiment", help="experiment YAML, e.g. experiments/smoke.yaml")
    run.add_argument("--scale", default=None, help="override the experiment's scale")
    run.add_argument("--workers", type=int, default=None, help="parallel worker processes")
    run.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides applied to every run")
    run.set_defaults(func=cmd_grid_run)

    report = sub.add_parser("report", help="write the markdown report of an experiment from MLflow")
    report.add_argument("experiment")
    report.set_defaults(func=cmd_report)

    ui = sub.add_parser("ui", help="serve the MLflow UI over the output folder's store")
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s, local only)")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=cmd_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ablate` console script; user errors print one line and exit 2."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `key=value` overrides may follow options (`grid run exp.yaml --workers 2 train.lr=1e-4`); argparse alone
    # stops collecting positionals at the first option, so gather the rest here.
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    for noisy in ("alembic", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.func(args)
    except AblateError as err:
        print(f"ablate: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Developer sessions: tests, lint, demo, bench. They share ONE virtual environment in `.venv`.

The torch stack is about 6 GB, so nox's one-venv-per-session default is not affordable: each session runs with
`python=False` and calls `.venv/bin/...`, and `_venv()` creates and (re)installs that environment only when
setup.cfg or constraints.txt changed since the last install.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".ablate-install-stamp"
nox.options.sessions = ["tests"]
DEMO_EXPERIMENT = "experiments/lynx_table3.yaml"
DEMO_SCALE = "tiny"  # the largest scale whose Table 3 grid (world and zoo included) finishes in minutes here (8.8)
DEMO_SEEDS = "0,1"  # two seeds, so the report's intervals include seed-to-seed variation
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MLFLOW_TRACKING_URI": ""}


def _venv(session: nox.Session) -> dict[str, str]:
    """Create/refresh the shared venv; return the environment to run its tools with."""
    wanted = hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in ("setup.cfg", "constraints.txt"))).hexdigest()
    if not (BIN / "python").exists():
        session.run(sys.executable, "-m", "venv", str(VENV), external=True)
    if not STAMP.exists() or STAMP.read_text() != wanted:
        pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        session.run(*pip, "-c", "constraints.txt", "-e", ".[test]", external=True)
        STAMP.write_text(wanted)
    return {**OFFLINE, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "VIRTUAL_ENV": str(VENV)}


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Run the test suite in two workers, one test file per worker at a time (slow tests included unless
    `-- -m "not slow"` is given; any arguments replace the defaults)."""
    env = _venv(session)
    session.run(str(BIN / "pytest"), *(session.posargs or ["-q", "-n", "2", "--dist", "loadfile"]), env=env,
                external=True)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """Static checks with ruff."""
    env = _venv(session)
    session.run(str(BIN / "ruff"), "check", ".", env=env, external=True)


@nox.session(python=False)
def demo(session: nox.Session) -> None:
    """The main job: world -> zoo (the entries the grid needs) -> the paper's Table 3 grid -> MLflow -> report.
    Ends with the report's path.

    `nox -s demo -- experiments/smoke.yaml --scale tiny` runs another experiment or scale.
    """
    env = _venv(session)
    args = session.posargs or [DEMO_EXPERIMENT, "--scale", DEMO_SCALE, "--seeds", DEMO_SEEDS]
    experiment, rest = args[0], args[1:]
    scale = rest[rest.index("--scale") + 1] if "--scale" in rest else DEMO_SCALE
    ablate = str(BIN / "ablate")
    session.run(ablate, "world", "build", "--scale", scale, env=env, external=True)
    session.run(ablate, "grid", "run", experiment, *rest, env=env, external=True)
    session.run(ablate, "report", experiment, env=env, external=True)


@nox.session(python=False)
def bench(session: nox.Session) -> None:
    """Speed figures side by side (ratios, medians) -> BENCHMARKS.md, benchmarks/latest.json, benchmarks/RESULTS.md."""
    env = _venv(session)
    session.run(str(BIN / "python"), "benchmarks/bench.py", *session.posargs, env=env, external=True)
    session.run(str(BIN / "python"), "benchmarks/report_speed.py", "--runs", "100", env=env, external=True)

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
    """Run the test suite (slow tests included unless `-- -m "not slow"` is given)."""
    env = _venv(session)
    session.run(str(BIN / "pytest"), *(session.posargs or ["-q"]), env=env, external=True)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """Static checks with ruff."""
    env = _venv(session)
    session.run(str(BIN / "ruff"), "check", ".", env=env, external=True)


@nox.session(python=False)
def demo(session: nox.Session) -> None:
    """The main job: a small controlled study, world -> grid -> MLflow -> report. Prints the report's path."""
    env = _venv(session)
    experiment = session.posargs[0] if session.posargs else "experiments/smoke.yaml"
    session.run(str(BIN / "ablate"), "grid", "run", experiment, env=env, external=True)
    session.run(str(BIN / "ablate"), "report", experiment, env=env, external=True)

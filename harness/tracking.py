"""MLflow bookkeeping: the embedded store, grid parent runs, child runs, batched logging, provenance tags.

The default store is a sqlite file plus a local artifact folder under one output folder. The sqlite schema is
created once, by the grid process, before any worker starts: two processes creating the same new database at
once crash. Single `log_metric` calls cost milliseconds each on sqlite, so everything goes through `log_batch`.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    import pandas as pd

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from harness.errors import AblateError

PARENT_TAG = "mlflow.parentRunId"
PACKAGES = ("torch", "transformers", "lightning", "timm", "mlflow", "webdataset", "optuna", "pandas")
MAX_PARAMS_PER_BATCH = 100  # MLflow's log_batch limit
MAX_PARAM_LENGTH = 6000
SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


@dataclass(frozen=True)
class Store:
    """One output folder: the MLflow sqlite file, its artifacts, the data cache and the reports. With `remote` (a
    tracking server's URI) MLflow's runs and artifacts are read from that server instead; the folder keeps the
    rest (reports)."""

    root: Path
    remote: str | None = None

    @property
    def tracking_uri(self) -> str:
        return self.remote or f"sqlite:///{(self.root / 'mlflow.db').resolve()}"

    @property
    def where(self) -> str:
        """How messages name where the runs are: the tracking server, or the output folder."""
        return f"the tracking server {self.remote}" if self.remote else str(self.root)

    @property
    def artifact_root(self) -> str:
        return (self.root / "mlartifacts").resolve().as_uri()

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    def relative(self, path: Path) -> str:
        """How a path inside the output folder is stored in MLflow: relative to the folder, so a moved or copied
        folder keeps working; a path outside the folder stays absolute."""
        path = Path(path).resolve()
        root = self.root.resolve()
        return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)

    def locate(self, stored: str, anchor: str = "checkpoints") -> Path:
        """A path stored in MLflow, inside this output folder. A relative one (`checkpoints/KEY`) is taken as it
        is; an absolute one from outside this folder (written before the folder was moved or copied) is re-rooted
        at its `anchor` part, `checkpoints` or `mlartifacts`, so a copy reads and writes its own files."""
        path = Path(stored)
        if not path.is_absolute():
            return self.root / path
        if path.is_relative_to(self.root.resolve()) or anchor not in path.parts:
            return path
        parts = path.parts
        # mlartifacts/<experiment>/...: the first one (an experiment may be called "checkpoints"); checkpoints/KEY:
        # the last one (the output folder itself may sit below a folder of that name).
        at = parts.index(anchor) if anchor == "mlartifacts" else len(parts) - 1 - parts[::-1].index(anchor)
        return self.root.joinpath(*parts[at:])

    def artifact_dir(self, artifact_uri: str) -> Path | None:
        """The local folder of a run's artifacts (re-rooted into this output folder), or None where artifacts are
        not local files (a tracking server)."""
        parsed = urlparse(artifact_uri)
        return self.locate(unquote(parsed.path), "mlartifacts") if parsed.scheme in ("", "file") else None

    def artifact_file(self, artifact_uri: str, name: str) -> Path | None:
        """The local file of a run's artifact (also after the output folder moved), or None where the artifacts
        are not local files or the file is missing."""
        folder = self.artifact_dir(artifact_uri)
        return folder / name if folder is not None and (folder / name).is_file() else None

    def log_text(self, client: MlflowClient, run_id: str, text: str, name: str) -> None:
        """Write a run's text artifact: into this folder's `mlartifacts` when artifacts are local files (MLflow keeps
        the absolute folder of when the experiment was created), through the tracking server otherwise."""
        folder = self.artifact_dir(client.get_run(run_id).info.artifact_uri)
        if folder is None:
            client.log_text(run_id, text, name)
            return
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")

    def client(self) -> MlflowClient:
        self.check_database()
        return MlflowClient(tracking_uri=self.tracking_uri)

    def exists(self) -> bool:
        return self.remote is not None or (self.root / "mlflow.db").is_file()

    def check_database(self) -> None:
        """An existing `mlflow.db` that is not an SQLite file is named as such, with how to recover."""
        if self.remote is not None:
            _check_server(self.remote)
            return
        db = self.root / "mlflow.db"
        if not db.is_file() or db.stat().st_size == 0:
            return
        with db.open("rb") as f:
            if f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC:
                return
        raise AblateError(
            f"the MLflow store {db} is not a readable SQLite database (damaged or overwritten); move it aside "
            f"(mv {db} {db}.damaged) and run again: finished runs are then retrained, and the artifacts under "
            f"{self.root / 'mlartifacts'} stay where they are"
        )

    def check_writable(self) -> None:
        """The output folder can be created and written, or one line says why not."""
        existing = self.root
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise AblateError(f"cannot create the output folder {self.root}: {existing} is a file, not a folder; "
                              "pass another folder with --out")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise AblateError(f"cannot create the output folder {self.root}: {existing} is not writable (read-only "
                              "file system or permissions); pass a writable folder with --out")

    def create(self) -> MlflowClient:
        """Create the folder and the sqlite schema (idempotent). Call once, before starting workers."""
        self.check_writable()
        self.check_database()
        try:
            for folder in (self.root, self.cache, self.reports, self.locks):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise AblateError(f"cannot create the output folder {self.root}: {err.strerror}; pass a writable "
                              "folder with --out") from None
        client = self.client()
        client.search_experiments(max_results=1)  # runs the schema migrations now, in this one process
        return client


@functools.cache
def _check_server(uri: str) -> None:
    """A tracking server that does not answer is named in one line at once (MLflow's own client retries for
    minutes)."""
    import urllib.error
    import urllib.request

    if urlparse(uri).scheme not in ("http", "https"):
        raise AblateError(f"--tracking-uri {uri}: expected an http(s):// URI of an MLflow tracking server")
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10) as response:
            response.read()
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise AblateError(f"cannot reach the MLflow tracking server {uri} ({reason}); is `mlflow server` running "
                          "there?") from None


def experiment_id(client: MlflowClient, store: Store, name: str) -> str:
    """The MLflow experiment named `name`, created with its artifacts under the store."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=f"{store.artifact_root}/{name}")
    except Exception:  # another process created it between the lookup and here
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def find_runs(client: MlflowClient, exp_id: str, **tags: str) -> list:
    """Runs of an experiment whose tags equal the given values (tag names use '.' for '__')."""
    clauses = [f"tags.`{k.replace('__', '.')}` = '{v}'" for k, v in tags.items()]
    return client.search_runs([exp_id], filter_string=" and ".join(clauses), max_results=5000)


def start_parent(client: MlflowClient, exp_id: str, grid_name: str, tags: dict[str, str],
                 shared: bool = False, kind: str = "grid") -> str:
    """Reuse the grid's (or with `kind="sweep"`, the sweep's) parent run if it exists (a re-run continues it), else
    create it. `shared`: grids on several machines may start at once (a tracking server), so exactly one of them
    creates it."""
    from harness.claims import once, wait_for

    def find() -> str | None:
        existing = find_runs(client, exp_id, ablate__kind=kind, ablate__grid=grid_name)
        return existing[0].info.run_id if existing else None

    run_id = find()
    if run_id is None and shared and not once(client, f"{exp_id}:{grid_name}:parent"):
        run_id = wait_for(find, f"the parent run of grid {grid_name}")
    if run_id is not None:
        client.update_run(run_id, status="RUNNING")
    else:
        grid_tags = {"ablate.kind": kind, "ablate.grid": grid_name}
        run_id = client.create_run(exp_id, run_name=grid_name, tags=grid_tags).info.run_id
    log_batch(client, run_id, tags=tags)
    return run_id


def newest_by_key(runs: list) -> dict[str, Any]:
    """Runs keyed by their run key; should two active runs share a key, the newest is the one that counts."""
    newest: dict[str, Any] = {}
    for r in runs:
        key = r.data.tags.get("ablate.run_key")
        if key not in newest or newest[key].info.start_time < r.info.start_time:
            newest[key] = r
    return newest


def child_runs(client: MlflowClient, exp_id: str, parent_id: str, key: str | None = None) -> dict[str, Any]:
    """The grid's child runs keyed by their run key (config hash); only those of run `key` when given."""
    tags = {"ablate__run_key": key} if key else {}
    return newest_by_key(find_runs(client, exp_id, mlflow__parentRunId=parent_id, **tags))


def log_batch(
    client: MlflowClient,
    run_id: str,
    metrics: dict[str, float] | None = None,
    params: dict[str, Any] | None = None,
    tags: dict[str, Any] | None = None,
    step: int = 0,
) -> None:
    """Log many values in as few requests as MLflow allows."""
    now = int(time.time() * 1000)
    metric_list = [Metric(k, float(v), now, step) for k, v in (metrics or {}).items()]
    param_list = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in (params or {}).items()]
    tag_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    for i in range(0, max(len(param_list), 1), MAX_PARAMS_PER_BATCH):
        client.log_batch(
            run_id,
            metrics=metric_list if i == 0 else [],
            params=param_list[i : i + MAX_PARAMS_PER_BATCH],
            tags=tag_list if i == 0 else [],
        )


def log_metric_series(client: MlflowClient, run_id: str, series: list[tuple[str, float, int]]) -> None:
    """Log (key, value, step) triples in batches of 1000, MLflow's limit."""
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, s) for k, v, s in series]
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i : i + 1000])


def finish(client: MlflowClient, run_id: str, ok: bool = True) -> None:
    """Mark a run FINISHED or FAILED."""
    client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.FINISHED if ok else RunStatus.FAILED))


def mark_killed(client: MlflowClient, run_id: str) -> None:
    """Mark a run KILLED (interrupted by the user); the next `grid run` runs it again."""
    client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.KILLED))


@functools.cache
def provenance() -> dict[str, str]:
    """Git sha of the working tree (with a '-dirty' mark) and the versions of the packages that shape results."""
    tags = {f"version.{name}": _version(name) for name in PACKAGES}
    tags["git.sha"] = _git_sha()
    return tags


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else the platform's word for it)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def numerics(threads: int, device: str = "cpu") -> dict[str, str]:
    """Where a run's floating-point sums were done: the processor (the GPU's name on a GPU) and torch's CPU thread
    count. Neither is part of a run's key, yet either changes the order of sums and so the trained weights
    (docs/findings.md, section 8); the report warns when one study's runs differ in them."""
    if device.startswith("cuda"):
        import torch

        return {"numerics.device": torch.cuda.get_device_name(torch.device(device)), "numerics.threads": str(threads)}
    return {"numerics.device": cpu_model(), "numerics.threads": str(threads)}


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git_sha() -> str:
    here = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def search_frame(store: Store, experiment: str, filter_string: str = "") -> pd.DataFrame | None:
    """The runs of MLflow experiment `experiment` matching `filter_string` as one row each (run_id, status,
    start_time, end_time, artifact_uri, then metrics.*, params.*, tags.* columns, as `mlflow.search_runs` gives
    them), or None when the experiment does not exist. Through a client, not MLflow's fluent API:
    `mlflow.set_tracking_uri` also sets MLFLOW_TRACKING_URI in the environment, which every later command of the
    process and every child process would inherit."""
    import pandas as pd

    client = store.client()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    rows, token = [], None
    while True:
        page = client.search_runs([exp.experiment_id], filter_string, max_results=5000, page_token=token)
        for r in page:
            rows.append({
                "run_id": r.info.run_id, "experiment_id": r.info.experiment_id, "status": r.info.status,
                "artifact_uri": r.info.artifact_uri,
                "start_time": pd.to_datetime(r.info.start_time, unit="ms", utc=True),
                "end_time": pd.to_datetime(r.info.end_time, unit="ms", utc=True) if r.info.end_time else pd.NaT,
                **{f"metrics.{k}": v for k, v in r.data.metrics.items()},
                **{f"params.{k}": v for k, v in r.data.params.items()},
                **{f"tags.{k}": v for k, v in r.data.tags.items()},
            })
        token = page.token
        if not token:
            break
    return pd.DataFrame(rows, columns=None if rows else ["run_id", "experiment_id", "status", "artifact_uri",
                                                          "start_time", "end_time"])

"""Two machines, one grid: grids sharing a real `mlflow server` on 127.0.0.1 execute every run exactly once.

Each "machine" is an `ablate grid run` process with its own output folder (its own disk: its file locks cannot
see the other's), both started at the same moment against the same tracking server. Runs are claimed through
the server (`harness/claims.py`), so each run trains once, into one MLflow run, whichever machine takes it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from harness.claims import PREFIX, alive, once

pytestmark = pytest.mark.slow


def test_two_machines_share_one_grid_and_each_run_executes_once(mlflow_server, tmp_path, quick):
    experiment = tmp_path / "shared.yaml"
    experiment.write_text(textwrap.dedent("""\
        name: shared
        scale: tiny
        baseline: lynx
        variants: [wo_adapter, linear_projector]
        seeds: [0, 1]
        workers: 1
        """))
    settings = [f"{k}={v}" for k, v in quick.items()]
    machines = [subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "--out", str(tmp_path / f"machine{i}"), "grid", "run", str(experiment),
         "--tracking-uri", mlflow_server, *settings],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in (0, 1)]
    outputs = [m.communicate(timeout=900)[0] for m in machines]
    assert all(m.returncode == 0 for m in machines), outputs
    ran = [int(re.search(r"shared: (\d+) ran", out).group(1)) for out in outputs]
    assert sum(ran) == 6, outputs  # six runs, each executed by exactly one machine

    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("shared")
    runs = client.search_runs([exp.experiment_id], "tags.`ablate.kind` = 'run'", run_view_type=ViewType.ALL)
    keys = [r.data.tags["ablate.run_key"] for r in runs]
    assert len(keys) == len(set(keys)) == 6, [(r.data.tags["ablate.run_key"], r.info.status, r.info.lifecycle_stage,
                                               r.data.tags.get("ablate.retry_of"), r.info.start_time) for r in runs] + outputs
    assert all(r.info.status == "FINISHED" and r.info.lifecycle_stage == "active" for r in runs)
    for r in runs:  # trained once: no metric step logged twice
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "train/finetune/loss")]
        assert steps and len(steps) == len(set(steps))
    parents = client.search_runs([exp.experiment_id], "tags.`ablate.kind` = 'grid'")
    assert len(parents) == 1
    claims = client.search_experiments(view_type=ViewType.ALL, filter_string=f"name LIKE '{PREFIX}%'")
    assert claims and not any(alive(c) for c in claims)  # every claim released


def test_a_claim_is_taken_once(mlflow_server):
    client = MlflowClient(tracking_uri=mlflow_server)
    assert once(client, "solo") is True
    assert once(client, "solo") is False  # the name stays taken after release

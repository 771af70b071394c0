"""Ctrl-C during a grid: the grid stops within seconds, the interrupted run and the grid are marked KILLED, and the
one line on stderr says how to resume. A real `ablate grid run` process trains a tiny model when it gets SIGINT,
as a terminal sends it to the whole foreground process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from harness.tracking import PARENT_TAG

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_marks_the_run_killed_and_says_how_to_resume(tiny_store, tmp_path, workers):
    name = f"interrupt-{workers}"
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(textwrap.dedent(f"""\
        name: {name}
        scale: tiny
        baseline: lynx
        variants: [wo_adapter]
        workers: {workers}
        overrides: {{model.llm.source: random, model.vision.weights: random, train.pretrain.steps: 100000}}
        """))
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "--out", str(tiny_store.root), "grid", "run",
                             str(experiment)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    client = tiny_store.client()
    deadline = time.monotonic() + 240
    running = []
    while not running and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(1)
        exp = client.get_experiment_by_name(name)
        runs = client.search_runs([exp.experiment_id]) if exp else []
        running = [r for r in runs if r.info.status == "RUNNING" and PARENT_TAG in r.data.tags]
    assert running, proc.communicate()
    time.sleep(8)  # into Lightning's fit
    os.killpg(proc.pid, signal.SIGINT)
    sent = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    stopped_after = time.monotonic() - sent
    assert proc.returncode == 130, stderr
    assert stopped_after < 30, stopped_after
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("ablate: interrupted: grid") and "Run the same `ablate grid run` again" in last, last
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    statuses = {r.data.tags.get("ablate.variant", "grid"): r.info.status for r in runs}
    assert statuses["grid"] == "KILLED", statuses
    assert "KILLED" in [s for v, s in statuses.items() if v != "grid"], statuses
    assert "RUNNING" not in statuses.values(), statuses


def test_after_kill_9_the_next_grid_run_recovers_the_stale_run_without_duplicates(tiny_store, tmp_path):
    from harness.experiment import load_experiment
    from harness.grid import run_grid

    experiment = tmp_path / "exp.yaml"
    experiment.write_text(textwrap.dedent("""\
        name: killed
        scale: tiny
        baseline: lynx
        variants: []
        overrides: {model.llm.source: random, model.vision.weights: random, train.pretrain.steps: 120,
                    train.high_res.steps: 0, train.finetune.steps: 60, train.log_every: 5, eval.splits: probes}
        """))
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "--out", str(tiny_store.root), "grid", "run",
                             str(experiment)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    client = tiny_store.client()
    deadline, logged = time.monotonic() + 240, []
    while not logged and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        exp = client.get_experiment_by_name("killed")
        runs = client.search_runs([exp.experiment_id], "tags.`ablate.kind` = 'run'") if exp else []
        logged = [r for r in runs if r.info.status == "RUNNING" and client.get_metric_history(
            r.info.run_id, "train/pretrain/loss")]  # metrics of the first stage are in MLflow
    assert logged, "the run never logged a metric"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stale = logged[0].info.run_id
    assert client.get_run(stale).info.status == "RUNNING"  # what kill -9 leaves behind

    outcome = run_grid(load_experiment(experiment), tiny_store)
    assert outcome.ok and outcome.finished == ["lynx seed 0"], outcome
    exp = client.get_experiment_by_name("killed")
    live = client.search_runs([exp.experiment_id], "tags.`ablate.kind` = 'run'")
    assert len(live) == 1 and live[0].info.status == "FINISHED"
    assert live[0].data.tags["ablate.retry_of"] == stale and client.get_run(stale).info.lifecycle_stage == "deleted"
    steps = [m.step for m in client.get_metric_history(live[0].info.run_id, "train/pretrain/loss")]
    assert steps == sorted(set(steps)) and steps[-1] == 120  # each step once, up to the end of the stage

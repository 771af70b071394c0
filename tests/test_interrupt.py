"""Ctrl-C during a grid: the grid stops within seconds, the interrupted run and the grid are marked KILLED, and the
one line on stderr says how to resume. A real `ablate grid run` process trains a tiny model when it gets SIGINT,
as a terminal sends it to the whole foreground process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from harness.tracking import PARENT_TAG

pytestmark = pytest.mark.slow


def experiment_file(path, name: str, workers: int, variants: list[str], overrides: dict) -> str:
    path.write_text(yaml.safe_dump({"name": name, "scale": "tiny", "baseline": "lynx", "variants": variants,
                                    "workers": workers, "overrides": overrides}))
    return str(path)


@pytest.fixture()
def spawn():
    """Start `ablate` processes in their own process groups; whatever is left is killed when the test ends."""
    started = []

    def start(*argv: str, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *argv], text=True, start_new_session=True,
                                **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for_line(proc: subprocess.Popen, text: str) -> list[str]:
    """Read the process's stderr until a line contains `text` (the store exists by then: no schema race)."""
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError("".join(lines))


def test_ctrl_c_marks_the_run_killed_and_says_how_to_resume(quick_store, quick, tmp_path, spawn):
    # Two workers, each training a run that would take hours: the Ctrl-C reaches the grid and both workers.
    name, store, workers = "interrupt", quick_store, 2
    experiment = experiment_file(tmp_path / "exp.yaml", name, workers, ["wo_adapter"],
                                 {**quick, "train.pretrain.steps": 100000})
    proc = spawn("--out", str(store.root), "grid", "run", experiment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    before = wait_for_line(proc, f"grid {name}: 2 runs")
    client = store.client()
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
    stderr = "".join(before) + stderr
    stopped_after = time.monotonic() - sent
    assert proc.returncode == 130, stderr
    assert stopped_after < 30, stopped_after
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("ablate: interrupted: grid") and "Run the same command again to resume" in last, last
    client = store.client()
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    statuses = {r.data.tags.get("ablate.variant", "grid"): r.info.status for r in runs}
    assert statuses["grid"] == "KILLED", statuses
    assert "KILLED" in [s for v, s in statuses.items() if v != "grid"], statuses
    assert "RUNNING" not in statuses.values(), statuses


def test_after_kill_9_the_next_grid_run_recovers_the_stale_run_without_duplicates(quick_store, quick, tmp_path,
                                                                                    spawn):
    from harness.experiment import load_experiment
    from harness.grid import run_grid

    store = quick_store
    experiment = experiment_file(tmp_path / "exp.yaml", "killed", 1, [], {
        **quick, "train.pretrain.steps": 120, "train.finetune.steps": 400, "train.log_every": 5})
    proc = spawn("--out", str(store.root), "grid", "run", experiment, stdout=subprocess.DEVNULL,
                 stderr=subprocess.PIPE)
    wait_for_line(proc, "grid killed: 1 runs")
    client = store.client()
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

    outcome = run_grid(load_experiment(experiment), store)
    assert outcome.ok and outcome.finished == ["lynx seed 0"], outcome
    exp = client.get_experiment_by_name("killed")
    live = client.search_runs([exp.experiment_id], "tags.`ablate.kind` = 'run'")
    assert len(live) == 1 and live[0].info.status == "FINISHED"
    assert live[0].data.tags["ablate.retry_of"] == stale and client.get_run(stale).info.lifecycle_stage == "deleted"
    steps = [m.step for m in client.get_metric_history(live[0].info.run_id, "train/pretrain/loss")]
    assert steps == sorted(set(steps)) and steps[-1] == 120  # each step once, up to the end of the stage

"""Ctrl-C during a grid: the grid stops within seconds, the interrupted run and the grid are marked KILLED, and the
one line on stderr says how to resume. A real `ablate grid run` process trains a tiny model when it gets SIGINT,
as a terminal sends it to the whole foreground process group."""

from __future__ import annotations

import json
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


def _history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_after_kill_9_mid_stage_the_run_resumes_and_ends_as_if_never_killed(quick_store, quick, tmp_path, spawn):
    """A real tiny run is killed with SIGKILL in the middle of its finetuning stage. The next grid run resumes it
    from its last resume point into the same MLflow run, logs no metric step twice, and ends with exactly the
    metrics of the same run trained without interruption (first, under another experiment name in the same output
    folder: the same world and tokenizer)."""
    from harness.experiment import load_experiment
    from harness.grid import run_grid
    from harness.resume import checkpoint_dir

    store = quick_store
    settings = {**quick, "train.pretrain.steps": 10, "train.finetune.steps": 120, "train.log_every": 5,
                "train.checkpoint_every": 20}
    assert run_grid(load_experiment(experiment_file(tmp_path / "straight.yaml", "straight", 1, [], settings)),
                    store).ok
    experiment = experiment_file(tmp_path / "exp.yaml", "killed", 1, [], settings)
    # --no-reuse: train it here, though "straight" finished the same run (by default it would be copied)
    proc = spawn("--out", str(store.root), "grid", "run", experiment, "--no-reuse", stdout=subprocess.DEVNULL,
                 stderr=subprocess.PIPE)
    wait_for_line(proc, "grid killed: 1 runs")
    (run,) = load_experiment(experiment).expand()
    summary = checkpoint_dir(store, run.key) / "resume.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        point = json.loads(summary.read_text()) if summary.is_file() else {}
        if point.get("stage") == "finetune" and point["done"] >= 40:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    client = store.client()
    (killed,) = client.search_runs([client.get_experiment_by_name("killed").experiment_id],
                                   "tags.`ablate.kind` = 'run'")
    assert killed.info.status == "RUNNING", "the run ended before it could be killed"  # what kill -9 leaves
    assert json.loads(summary.read_text())["stage"] == "finetune"

    outcome = run_grid(load_experiment(experiment), store, reuse=False)
    assert outcome.ok and outcome.finished == ["lynx seed 0"], outcome
    resumed = client.get_run(killed.info.run_id)  # the same MLflow run, now finished
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["ablate.resumed_from"].startswith("finetune step ")
    assert not summary.exists()  # a finished run keeps no resume point

    (straight,) = client.search_runs([client.get_experiment_by_name("straight").experiment_id],
                                     "tags.`ablate.kind` = 'run'")
    for key in ("train/pretrain/loss", "train/finetune/loss", "train/finetune/lr"):
        got, want = _history(client, resumed.info.run_id, key), _history(client, straight.info.run_id, key)
        assert [s for s, _ in got] == [s for s, _ in want], key  # every step once, none missing
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-5, abs=1e-6), key
    evals = {k: v for k, v in straight.data.metrics.items() if k.startswith("eval/")}
    assert evals and {k: resumed.data.metrics[k] for k in evals} == pytest.approx(evals, rel=1e-6)


POOL_SCRIPT = """
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from harness.grid import _init_worker

def work():
    return os.getpid()

if __name__ == "__main__":
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker) as pool:
        print(pool.submit(work).result(), flush=True)
        time.sleep(600)
"""


def test_grid_workers_exit_when_the_grid_process_is_killed(tmp_path):
    """`kill -9` of the grid process must not leave its workers training on as orphans."""
    script = tmp_path / "pool.py"
    script.write_text(POOL_SCRIPT)
    grid = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(grid.stdout.readline())
    os.kill(grid.pid, signal.SIGKILL)
    grid.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.kill(worker, signal.SIGKILL)
    pytest.fail(f"worker {worker} still running 30 s after its grid process was killed")

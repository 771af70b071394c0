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

"""`ablate grid status`: one line per run from MLflow, the run locks and the progress files, without training."""

from __future__ import annotations

import fcntl
import json
import textwrap

from harness.cli import main
from harness.experiment import load_experiment
from harness.progress import RunProgress
from harness.resume import checkpoint_dir
from harness.tracking import PARENT_TAG, Store, experiment_id, start_parent


def test_each_run_state_gets_its_line(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent("""\
        name: states
        scale: tiny
        baseline: lynx
        variants: [w_llama, wo_adapter]
        seeds: [0, 1]
        """))
    runs = load_experiment(path).expand()
    store = Store(tmp_path / "out")
    client = store.create()
    exp = experiment_id(client, store, "states")
    parent = start_parent(client, exp, "states", tags={})
    statuses = {0: "FINISHED", 1: "FAILED", 2: "KILLED", 3: "RUNNING", 4: "RUNNING"}  # 5: never created
    for i, status in statuses.items():
        run_id = client.create_run(exp, tags={PARENT_TAG: parent, "ablate.run_key": runs[i].key,
                                              "ablate.kind": "run", "ablate.grid": "states",
                                              "ablate.error": "ValueError: boom",
                                              "ablate.eval_key": runs[i].eval_key,
                                              # run 0 was trained on a world an older generator built
                                              **({"ablate.world_hash": "0123456789ab"} if i == 0 else {})}).info.run_id
        client.update_run(run_id, status=status)
        if i == 2:  # the killed run left a resume point
            folder = checkpoint_dir(store, runs[i].key)
            folder.mkdir(parents=True)
            (folder / "resume.pt").write_bytes(b"")
            (folder / "resume.json").write_text(json.dumps({"run_id": run_id, "stage": "finetune", "done": 300}))
    # Run 3 is alive: its worker holds the lock and writes progress. Run 4's process died (no lock held).
    progress = RunProgress(store.locks, runs[3].key, "w_llama seed 1", [("finetune", 600)])
    progress.update(force=True, stage="finetune", step=320, total=600, loss=1.25, samples_per_s=40.0,
                    steps_per_s=2.0)
    (store.locks / f"{runs[4].key}.lock").write_text("")
    with open(store.locks / f"{runs[3].key}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main(["--out", str(store.root), "grid", "status", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["lynx", "seed", "0", "done"]
    assert out[0].endswith("done (trained on another build of the world or zoo: a fresh --out trains it on this one)")
    assert out[1].startswith("lynx seed 1") and out[1].endswith("failed: ValueError: boom")
    assert out[2].startswith("w_llama seed 0") and "killed (the next grid run resumes it from finetune step 300)" in out[2]
    assert "running: finetune 320/600, loss 1.250, 40 samples/s, stage ETA 2m20s" in out[3]
    assert "stale: RUNNING in MLflow but no process holds its lock" in out[4]
    assert out[5].startswith("wo_adapter seed 1") and out[5].endswith("pending")
    assert out[6] == "states: 1 done, 1 failed, 1 killed, 1 running, 1 stale, 1 pending"


def test_a_progress_line_rewrites_itself_on_a_terminal_and_logs_plain_lines_elsewhere(monkeypatch, caplog):
    import io
    import logging

    from harness.progress import ProgressLine

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    line = ProgressLine("zoo llm-base: step", 800, stream=terminal)
    line.every = 0  # show every update
    line.update(400, "loss 1.234")
    line.close()
    assert terminal.getvalue().startswith("\r\033[Kzoo llm-base: step: 400/800, loss 1.234, ETA ")
    assert terminal.getvalue().endswith("\r\033[K")  # cleared, so the next log line starts clean

    monkeypatch.setenv("ABLATE_PROGRESS_EVERY", "0")
    log = io.StringIO()
    with caplog.at_level(logging.INFO, logger="ablate"):
        plain = ProgressLine("world: chunks written", 10, stream=log)
        plain.update(5)
    assert log.getvalue() == "" and "world: chunks written: 5/10, ETA" in caplog.text

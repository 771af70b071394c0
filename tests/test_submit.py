"""`ablate grid submit --executor local`: one submitit job per pending run (local processes, as SLURM jobs would be),
each run executed exactly once, into the grid's MLflow runs; a second submit finds nothing to do."""

from __future__ import annotations

import pytest
import yaml

from harness.cli import main

pytestmark = pytest.mark.slow


def test_local_jobs_run_each_pending_run_once(quick_store, quick, tmp_path, capsys):
    path = tmp_path / "submitted.yaml"
    path.write_text(yaml.safe_dump({"name": "submitted", "scale": "tiny", "baseline": "lynx",
                                    "variants": ["wo_adapter"], "seeds": [0], "overrides": quick}))
    out = str(quick_store.root)
    # --no-reuse: the shared store may hold the same lynx run from another test's experiment
    assert main(["--out", out, "grid", "submit", str(path), "--executor", "local", "--no-reuse"]) == 0
    assert "submitted: 2 submitted, 2 ran, 0 skipped" in capsys.readouterr().out
    client = quick_store.client()
    exp = client.get_experiment_by_name("submitted")
    runs = client.search_runs([exp.experiment_id], "tags.`ablate.kind` = 'run'")
    assert sorted(r.data.tags["ablate.variant"] for r in runs) == ["lynx", "wo_adapter"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:  # trained once: one value per training metric step
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/finetune/loss")]
        assert steps == sorted(set(steps)) and steps
    logs = list((quick_store.root / "submitit").rglob("*_log.out"))
    assert len(logs) == 2  # each run was its own job

    assert main(["--out", out, "grid", "submit", str(path), "--executor", "local"]) == 0
    assert "0 submitted, 0 ran, 2 skipped" in capsys.readouterr().out

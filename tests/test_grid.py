"""End to end on a real sqlite MLflow store: a smoke grid runs, re-runs skip, and the report reads it back."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.experiment import load_experiment
from harness.grid import grid_status, run_grid
from harness.resume import checkpoint_dir, weights_digest
from harness.tracking import Store
from reports import write_report
from reports.runs import load_grid_runs

REPO = Path(__file__).resolve().parent.parent
# Small and fast: random-init backbones (no zoo build), a small world, a few steps, greedy short decoding.
FAST = {
    "world.num_images": 300, "world.num_noisy": 100, "world.num_videos": 40, "world.num_text": 100,
    "world.samples_per_shard": 200,
    "model.llm.source": "random", "model.vision.weights": "random",
    "train.pretrain.steps": 10, "train.high_res.steps": 5, "train.finetune.steps": 10,
    "eval.openvqa.num_beams": 1, "eval.openvqa.max_new_tokens": 6, "eval.long.max_new_tokens": 8,
    "train.log_every": 2,
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("out"))
    experiment = load_experiment(REPO / "experiments/smoke.yaml")
    outcome = run_grid(experiment, store, FAST)
    return experiment, store, outcome


def test_every_run_finishes(smoke):
    experiment, store, outcome = smoke
    assert outcome.ok and len(outcome.finished) == 3 and not outcome.skipped


def test_child_runs_carry_config_tags_metrics_and_artifacts(smoke):
    experiment, store, _ = smoke
    runs, parent = load_grid_runs(store, experiment.name)
    assert len(runs) == 3 and set(runs["status"]) == {"FINISHED"}
    lynx = runs[runs["tags.ablate.variant"] == "lynx"].iloc[0]
    assert lynx["params.train.finetune.steps"] == "10" and lynx["params.model.connector.kind"] == "resampler"
    for tag in ("ablate.axis", "ablate.config_hash", "ablate.seed", "git.sha", "version.torch", "ablate.world_hash",
                "numerics.device"):
        assert lynx["tags." + tag], tag
    assert int(lynx["tags.numerics.threads"]) >= 1  # where its sums ran: not in the run key, but they move results
    assert lynx["tags.freeze.finetune.vision"] == "frozen" and lynx["tags.freeze.finetune.adapters"] == "trainable"
    assert 0 <= lynx["metrics.eval/openvqa_image/acc"] <= 100
    assert lynx["metrics.eval/openvqa_image/OCR/n"] == 53
    client = store.client()
    names = {a.path for a in client.list_artifacts(lynx["run_id"])}
    assert {"config.yaml", "predictions.jsonl", "freeze_policy.txt"} <= names
    history = client.get_metric_history(lynx["run_id"], "train/finetune/loss")
    assert len(history) >= 3 and history[0].step < history[-1].step


def test_rerun_skips_every_finished_run(smoke):
    experiment, store, first = smoke
    again = run_grid(experiment, store, FAST)
    assert again.skipped and len(again.skipped) == 3 and not again.finished
    assert again.parent_run_id == first.parent_run_id
    assert not again.other_build  # trained on the world and zoo this code builds


def test_a_run_finished_on_another_world_build_is_kept_and_named(smoke, caplog):
    experiment, store, _ = smoke
    client = store.client()
    exp = client.get_experiment_by_name("smoke").experiment_id
    run = client.search_runs([exp], "tags.`ablate.kind` = 'run' and tags.`ablate.variant` = 'wo_adapter'")[0]
    real = run.data.tags["ablate.world_hash"]
    client.set_tag(run.info.run_id, "ablate.world_hash", "0123456789ab")  # as if an older generator had built it
    try:
        with caplog.at_level("WARNING", logger="ablate"):
            again = run_grid(experiment, store, FAST)
    finally:
        client.set_tag(run.info.run_id, "ablate.world_hash", real)
    assert len(again.skipped) == 3 and not again.finished and len(again.other_build) == 1
    assert "wo_adapter" in again.other_build[0]
    assert "trained on another build of the world or zoo" in caplog.text and "fresh --out" in caplog.text


def test_report_reads_the_grid_back(smoke):
    experiment, store, _ = smoke
    path = write_report(experiment, store)
    text = path.read_text()
    assert path == store.reports / "smoke" / "report.md" and path.with_name("report.html").is_file()
    lines = text.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("| variant")))
    table = lines[start:lines.index("", start)]  # the first table: Open-VQA image, Table 3 layout
    assert "OCR" in table[0] and "Δ vs lynx [95% CI]" in table[0]
    rows = {line.split("|")[1].strip(): line for line in table[2:]}
    assert set(rows) == {"lynx", "wo_adapter", "linear_projector"}
    header = [cell.strip() for cell in table[0].split("|")]
    delta = header.index("Δ vs lynx [95% CI]")
    assert rows["lynx"].split("|")[delta].strip() == "—"  # the baseline has no delta against itself
    # One seed still gets an interval: the paired bootstrap resamples the 302 benchmark items.
    assert re.fullmatch(r"[+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]", rows["wo_adapter"].split("|")[delta].strip())
    assert rows["lynx"].split("|")[2].strip().endswith("/53")  # one seed: OCR as k/N


def test_report_lists_every_setting_that_differs_from_the_baseline(smoke):
    experiment, store, _ = smoke
    text = write_report(experiment, store).read_text()
    section = text[text.index("## What each variant changes against `lynx`"):]
    assert "`model.connector.kind`: `resampler` → `linear`" in section
    assert "`model.adapter.kind`: `bottleneck` → `none`" in section


def test_every_report_table_is_also_csv_and_booktabs_latex(smoke):
    import pandas as pd

    experiment, store, _ = smoke
    write_report(experiment, store)
    folder = store.reports / "smoke"
    table = pd.read_csv(folder / "openvqa_image.csv")
    assert list(table["variant"]) == ["lynx", "wo_adapter", "linear_projector"] and "overall %" in table
    tex = (folder / "openvqa_image.tex").read_text()
    assert tex.startswith("\\begin{tabular}{l") and "\\toprule" in tex and "\\bottomrule" in tex
    assert "wo\\_adapter" in tex and "overall \\%" in tex and "Δ" not in tex and "$\\Delta$" in tex
    assert {p.stem for p in folder.glob("*.tex")} == {p.stem for p in folder.glob("*.csv")} >= {"openvqa_image", "cost"}
    assert {"overall.png", "deltas.png", "compute.png", "loss.png"} <= {p.name for p in folder.glob("*.png")}
    cost = pd.read_csv(folder / "cost.csv").set_index("variant")  # efficiency, measured while training
    assert (cost["visual tokens"] > 0).all() and (cost["train TFLOP"] > 0).all()
    assert (cost["samples/s (finetune)"] > 0).all() and (cost["peak memory (MB)"] > 50).all()
    assert cost.loc["linear_projector", "visual tokens"] > cost.loc["lynx", "visual tokens"]  # every patch vs 32


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_the_html_report_renders_in_a_real_browser(smoke, tmp_path):
    experiment, store, _ = smoke
    page = write_report(experiment, store).with_suffix(".html")
    browser = ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]
    shot = tmp_path / "report.png"
    run = subprocess.run([*browser, "--window-size=1366,900", "--hide-scrollbars", f"--screenshot={shot}",
                          page.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000, run.stderr[-2000:]  # a rendered page, not a blank one
    dom = subprocess.run([*browser, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    console = [line for line in (run.stderr + dom.stderr).splitlines() if ":CONSOLE" in line]
    assert not console, console  # no script error, no failed resource
    html = dom.stdout
    assert html.count('<table class="sortable">') >= 4
    assert html.count('src="data:image/png;base64,') >= 3  # overall accuracy, deltas by axis, category heatmap
    sections = re.findall(r'<h2 id="([^"]+)"', html)
    assert sections and all(f'href="#{s}"' in html for s in sections)  # every section is in the contents
    # A click on a column header sorts the table by it: numbers as numbers ("40.8 ± 0.8" reads as 40.8).
    probe = tmp_path / "sorted.html"
    probe.write_text(page.read_text().replace("</body>", """<script>
      const table = Array.from(document.querySelectorAll("table.sortable")).find(
        t => Array.from(t.tHead.rows[0].cells).some(c => c.textContent === "overall %"));
      const head = Array.from(table.tHead.rows[0].cells).find(c => c.textContent === "overall %");
      head.click();
      document.title = Array.from(table.tBodies[0].rows).map(r => r.cells[head.cellIndex].textContent).join("|");
      </script></body>"""))
    clicked = subprocess.run([*browser, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    values = [float(v.split()[0]) for v in re.search(r"<title>([^<]*)</title>", clicked.stdout).group(1).split("|")]
    assert len(values) == 3 and values == sorted(values), values


def test_python_api_gives_the_reports_numbers_as_dataframes(smoke):
    import reports

    experiment, store, _ = smoke
    study = reports.load(REPO / "experiments/smoke.yaml", out=store.root)
    assert study.baseline == "lynx" and study.variants[0] == "lynx" and len(study.runs) == 3
    assert {"variant", "seed", "status", "eval/openvqa_image/acc"} <= set(study.runs.columns)
    assert set(study.predictions["variant"]) == {"lynx", "wo_adapter", "linear_projector"}
    deltas = study.deltas("openvqa_image/acc").set_index("variant")
    assert set(deltas.index) == {"wo_adapter", "linear_projector"} and (deltas["items"] == 302).all()
    runs = study.runs.set_index("variant")["eval/openvqa_image/acc"]
    assert deltas.loc["wo_adapter", "delta"] == pytest.approx(runs["wo_adapter"] - runs["lynx"], abs=1e-9)
    assert deltas.loc["wo_adapter", "low"] <= deltas.loc["wo_adapter", "delta"] <= deltas.loc["wo_adapter", "high"]


def test_a_run_another_experiment_finished_is_copied_not_trained(smoke, tmp_path):
    """A second experiment in the same output folder that lists a run the first one finished (the same run key)
    copies it: its own MLflow run with the same metrics and loss history, tags and artifacts, and a report of its
    own; `reuse=False` trains it again."""
    experiment, store, _ = smoke
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump({"name": "smoke_again", "scale": "tiny", "baseline": "lynx", "variants": [],
                                     "seeds": [0], "overrides": dict(experiment.overrides)}))
    client = store.client()
    original = load_grid_runs(store, experiment.name)[0].set_index("tags.ablate.variant").loc["lynx"]
    # The run key leaves names out: a source may carry labels this run does not (another variant's, or an edited
    # variant file's). The copy gets this run's own.
    client.set_tag(original["run_id"], "ablate.paper_scores", '{"openvqa_image/acc": 1.0}')
    try:
        copied = run_grid(load_experiment(again), store, FAST)
    finally:
        client.set_tag(original["run_id"], "ablate.paper_scores", original["tags.ablate.paper_scores"])
    assert copied.ok and copied.copied == ["lynx seed 0"] == copied.skipped and not copied.finished
    runs, _ = load_grid_runs(store, "smoke_again")
    (copy,) = runs.to_dict("records")
    assert copy["tags.ablate.copied_from"] == f"{original['run_id']} (experiment smoke)"
    assert copy["tags.ablate.run_key"] == original["tags.ablate.run_key"] and copy["run_id"] != original["run_id"]
    assert copy["status"] == "FINISHED" and copy["tags.ablate.grid"] == "smoke_again"
    metrics = [c for c in runs.columns if c.startswith("metrics.")]
    assert metrics and all(copy[c] == original[c] for c in metrics)
    history = [(m.step, m.value) for m in client.get_metric_history(copy["run_id"], "train/finetune/loss")]
    assert history == [(m.step, m.value) for m in client.get_metric_history(original["run_id"], "train/finetune/loss")]
    assert {a.path for a in client.list_artifacts(copy["run_id"])} == \
        {a.path for a in client.list_artifacts(original["run_id"])}
    assert copy["tags.ablate.paper_scores"] == original["tags.ablate.paper_scores"] != '{"openvqa_image/acc": 1.0}'
    assert "lynx" in write_report(load_experiment(again), store).read_text()
    (line,) = grid_status(load_experiment(again), store, FAST)
    assert line == ("lynx seed 0", f"done (copied from run {original['run_id']} (experiment smoke))")
    second = run_grid(load_experiment(again), store, FAST)
    assert second.skipped == ["lynx seed 0"] and not second.copied  # its own copy now: nothing copied twice

    digest = original["tags.ablate.checkpoint_sha256"]
    assert copy["tags.ablate.checkpoint_sha256"] == digest == weights_digest(checkpoint_dir(store, copy["tags.ablate.run_key"]))
    fresh = tmp_path / "fresh.yaml"
    fresh.write_text(again.read_text().replace("smoke_again", "smoke_fresh"))
    retrained = run_grid(load_experiment(fresh), store, FAST, reuse=False)
    assert retrained.finished == ["lynx seed 0"] and not retrained.copied

    # Every finished run of the key (the copy too) now names weights the shared checkpoint folder does not hold:
    # none is copied.
    runs = [load_grid_runs(store, name)[0].set_index("tags.ablate.variant").loc["lynx", "run_id"]
            for name in ("smoke", "smoke_again", "smoke_fresh")]
    for run_id in runs:
        client.set_tag(run_id, "ablate.checkpoint_sha256", "0" * 16)
    stale = tmp_path / "stale.yaml"
    stale.write_text(again.read_text().replace("smoke_again", "smoke_stale"))
    try:
        trained = run_grid(load_experiment(stale), store, FAST)
    finally:
        for run_id in runs:
            client.set_tag(run_id, "ablate.checkpoint_sha256", digest)
    assert trained.finished == ["lynx seed 0"] and not trained.copied


def test_changed_setting_is_a_new_run(smoke):
    experiment, store, _ = smoke
    changed = run_grid(experiment, store, {**FAST, "train.finetune.steps": 11, "eval.splits": "mme"})
    assert len(changed.finished) == 3
    # The report shows the grid as last run: the new runs only (MME), not a mix with the earlier ones.
    text = write_report(experiment, store).read_text()
    assert "## MME" in text and "## Open-VQA" not in text

"""Components from a user's package: entry points of `ablate.connectors`, `ablate.judges`, ... are listed without
importing them, used by name in configs, loaded in every process (grid workers too), tagged on the runs that use
them; a plugin that fails to load disables only itself."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from harness.cli import main
from harness.components import CONNECTORS, JUDGES, plugin_tags
from harness.errors import AblateError
from harness.resolve import resolve

PACKAGE = Path(__file__).parent / "plugin_pkg"  # ablate-testplugin 0.3: a variant, a connector, a split, judges


def install_for_this_run(package: Path, site: Path) -> None:
    """Install `package` (a folder with a pyproject.toml) as pip would for this process and the ones it starts:
    its dist-info (name, version, entry points, read from pyproject.toml) in `site`, and both on the path."""
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in entries.items()) + "\n"
        for group, entries in project["entry-points"].items()))


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    """tests/plugin_pkg installed for this test, in this process and in every process it starts."""
    from harness.components import registries
    from harness.variant import catalogue

    site = tmp_path / "site"
    install_for_this_run(PACKAGE, site)
    for folder in (PACKAGE, site):
        monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PACKAGE), str(site), os.environ.get("PYTHONPATH", "")]))

    def forget():
        for registry in registries().values():
            registry.refresh()
        catalogue.cache_clear()
        for name in [m for m in sys.modules if m.startswith("ablate_testplugin")]:
            sys.modules.pop(name)

    forget()
    yield site
    monkeypatch.undo()
    forget()


def test_plugins_are_listed_with_their_package_and_a_broken_one_disables_only_itself(plugin, capsys):
    assert main(["components", "list"]) == 0
    out = capsys.readouterr().out
    assert "avgpool    plugin ablate-testplugin 0.3 (ablate_testplugin:avgpool)" in out
    assert "lenient  plugin ablate-testplugin 0.3 (ablate_testplugin:LenientJudge)" in out
    broken = next(line for line in out.splitlines() if line.strip().startswith("broken"))
    assert "BROKEN: connector 'broken' from plugin ablate-testplugin 0.3" in broken
    assert "ImportError: needs the flux capacitor" in broken
    assert "resampler  built-in" in out  # the rest still works
    assert "split (eval.splits; plugins: entry-point group ablate.splits)" in out
    assert "count_only         plugin ablate-testplugin 0.3 (ablate_testplugin:COUNT_ONLY)" in out
    assert main(["variants", "list"]) == 0


def test_a_plugin_component_is_used_by_name_and_tagged(plugin):
    import torch

    from harness.evaluation.judges import build_judge

    run = resolve("lynx", cli={"model.connector.kind": "avgpool", "eval.judge": "lenient"})
    connector = CONNECTORS.get("avgpool")(run.config.model.connector, 16, 8)
    tokens, mask = connector(torch.randn(2, 5, 16), torch.tensor([[True] * 5, [True, True, False, False, False]]))
    assert tokens.shape == (2, 1, 8) and mask.all()
    assert build_judge("lenient")("What colour?", "it is Red", "red")
    tags = plugin_tags({"model.connector.kind": "avgpool", "eval.judge.name": "lenient", "model.fusion.kind": "prefix"})
    assert tags == {
        "ablate.plugin.connector.avgpool": "ablate-testplugin 0.3 (ablate_testplugin:avgpool)",
        "ablate.plugin.judge.lenient": "ablate-testplugin 0.3 (ablate_testplugin:LenientJudge)",
    }
    assert JUDGES.origin("rules").kind == "built-in"


def test_a_plugin_split_is_known_everywhere_a_split_is_and_its_items_version_is_part_of_the_evaluation_key(plugin):
    import dataclasses

    from harness.evaluation.splits import SPLITS, Split, get_split, headline_scores, known_splits
    from harness.resolve import eval_settings

    assert known_splits() == ["openvqa_image", "openvqa_image_10x", "openvqa_video", "openvqa_video_10x", "mme", "probes", "count_only"]
    run = resolve("lynx", cli={"eval.splits": "probes,count_only"})
    assert eval_settings(run.config)["eval.split_items"] == {"count_only": 1}
    assert "eval.split_items" not in eval_settings(resolve("lynx").config)  # built-in splits: keys as before
    assert plugin_tags({"eval.splits": "probes, count_only"}) == {
        "ablate.plugin.split.count_only": "ablate-testplugin 0.3 (ablate_testplugin:COUNT_ONLY)"}
    metrics = {"eval/openvqa_image/acc": 37.92, "eval/count_only/acc": 25.0, "eval/probes/yes_no_compliance": 80.0}
    assert headline_scores(metrics) == "Open-VQA image 37.9%, count_only 25.0%"
    # new items: the same run, a new evaluation key, so finished runs are scored again
    import ablate_testplugin

    before = run.eval_key
    plugin_split = ablate_testplugin.COUNT_ONLY
    SPLITS._loaded["count_only"] = dataclasses.replace(plugin_split, items_version=2)
    assert resolve("lynx", cli={"eval.splits": "probes,count_only"}).eval_key != before
    SPLITS._loaded["count_only"] = plugin_split
    SPLITS.register("not_a_split")(object())
    try:
        with pytest.raises(AblateError, match="split 'not_a_split' .* must be a harness.evaluation.splits.Split"):
            get_split("not_a_split")
    finally:
        SPLITS._registered.pop("not_a_split")
    with pytest.raises(AblateError, match="split name 'a,b' must be letters, digits and _"):
        Split("a,b", "openvqa", "openvqa", "A comma")
    with pytest.raises(AblateError, match="split 'odd': kind must be one of .*got 'multiple_choice'"):
        Split("odd", "multiple_choice", "openvqa", "Odd")


def test_a_configured_batched_judge_from_a_plugin_scores_a_split_in_one_call_and_keeps_its_raw_output(
        plugin, tmp_path):
    from harness.config.validate import ConfigError
    from harness.evaluation import build_judge, judge_rows, read_predictions, write_predictions

    run = resolve("lynx", experiment={"eval": {"judge": {"name": "prefix", "options": {"strict": True}}}})
    assert run.config.eval.judge.name == "prefix" and run.config.eval.judge.options == {"strict": True}
    judge = build_judge(run.config.eval.judge.name, run.config.eval.judge.options)
    rows = [{"keys": f"k{i}", "split": split, "category": "Color", "question": "What colour?", "answer": answer,
             "pair_id": "", "probe": "", "prediction": prediction, "correct": None}
            for i, (split, answer, prediction) in enumerate([("openvqa_image", "Red", "Red circle"),
                                                              ("openvqa_image", "Red", "red circle"),
                                                              ("openvqa_video", "3", "3 of them"),
                                                              ("mme", "yes", "Yes, there is.")])]
    type(judge).batches.clear()
    judged = judge_rows(rows, judge)
    assert type(judge).batches == [3]  # every non-MME row in one call; MME is decided by its yes/no
    assert [r["correct"] for r in judged] == [True, False, True, True]
    assert judged[1]["judge_output"] == "strict: 'red circle' vs 'Red'" and "judge_output" not in judged[3]
    saved = read_predictions(write_predictions(judged, tmp_path / "predictions.jsonl"))
    assert [r.get("judge_output") for r in saved] == [r.get("judge_output") for r in judged]
    # the name alone (a shorthand) takes the judge's defaults: folded case
    folded = resolve("lynx", cli={"eval.judge": "prefix"}).config.eval.judge
    assert judge_rows(rows[1:2], build_judge(folded.name, folded.options))[0]["correct"] is True
    with pytest.raises(ConfigError, match="judge 'prefix' takes no option 'strickt'.*did you mean 'strict'"):
        resolve("lynx", cli={"eval.judge.name": "prefix", "eval.judge.options": {"strickt": True}})


def test_a_grid_that_uses_the_broken_plugin_fails_in_one_line_before_writing(plugin, tmp_path, capsys):
    experiment = tmp_path / "exp.yaml"
    experiment.write_text("name: x\nbaseline: lynx\nvariants: [wo_adapter]\noverrides: {model.connector.kind: broken}\n")
    assert main(["--out", str(tmp_path / "o"), "grid", "run", str(experiment)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.connector.kind: connector 'broken' from plugin ablate-testplugin 0.3" in err[0]
    assert "failed to load: ImportError: needs the flux capacitor" in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_grid_runs_a_plugin_variant_connector_split_and_judge_in_spawned_workers_and_reports_the_split(
        plugin, quick_store, quick):
    """Two spawned workers find all four kinds through the package's entry points: the variant (whose connector
    is the plugin's), the split (its items written into the world on first use) and the judge; the report shows
    the new split under its declared title."""
    from harness.experiment import Experiment
    from harness.grid import run_grid
    from reports import write_report

    experiment = Experiment(name="plugin", path=Path("tests/test_plugins.py"), scale="tiny", baseline="lynx",
                            variants=("w_avgpool",), workers=2,
                            overrides={**quick, "eval.splits": "probes,count_only", "eval.judge": "lenient"})
    store = quick_store
    outcome = run_grid(experiment, store, reuse=False)  # the shared store may hold this lynx from another test
    assert outcome.ok and len(outcome.finished) == 2, outcome.failed
    client = store.client()
    runs = client.search_runs([client.get_experiment_by_name("plugin").experiment_id], "tags.`ablate.kind` = 'run'")
    tags = {r.data.tags["ablate.variant"]: r.data.tags for r in runs}
    plugin_tags_of = {v: {k: t for k, t in tags[v].items() if k.startswith("ablate.plugin.")} for v in tags}
    both = {"ablate.plugin.split.count_only": "ablate-testplugin 0.3 (ablate_testplugin:COUNT_ONLY)",
            "ablate.plugin.judge.lenient": "ablate-testplugin 0.3 (ablate_testplugin:LenientJudge)"}
    assert plugin_tags_of["lynx"] == both
    assert plugin_tags_of["w_avgpool"] == {**both,
                                           "ablate.plugin.connector.avgpool": "ablate-testplugin 0.3 (ablate_testplugin:avgpool)"}
    for run in runs:
        assert run.data.metrics["eval/count_only/n"] == 12 and "eval/count_only/Count/acc" in run.data.metrics
    report = write_report(experiment, store).read_text()
    assert "## Counting only (a plugin split)" in report
    section = report.split("## Counting only (a plugin split)")[1].split("\n## ")[0]
    assert "| w_avgpool " in section and "Count" in section
    # `ablate eval` scores a saved run on the plugin's split (and finds its judge) in a process of its own
    lynx_run = next(r.info.run_id for r in runs if r.data.tags["ablate.variant"] == "lynx")
    done = subprocess.run([sys.executable, "-m", "harness.cli", "--out", str(store.root), "eval", lynx_run,
                           "--splits", "count_only"], capture_output=True, text=True, env=os.environ, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[0].startswith("count_only  Count")
    assert "/12" in done.stdout.splitlines()[1]

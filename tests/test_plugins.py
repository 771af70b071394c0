"""Components from a user's package: entry points of `ablate.connectors`, `ablate.judges`, ... are listed without
importing them, used by name in configs, loaded in every process (grid workers too), tagged on the runs that use
them; a plugin that fails to load disables only itself."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from harness.cli import main
from harness.components import COMPONENT_KEYS, CONNECTORS, JUDGES, plugin_tags
from harness.resolve import resolve

PLUGIN = '''
import torch
from torch import nn


class AvgPool(nn.Module):
    """One visual token: the masked mean of the vision tokens, projected to the LLM's width."""

    def __init__(self, vision_dim, llm_dim):
        super().__init__()
        self.proj = nn.Linear(vision_dim, llm_dim)

    def forward(self, x, mask):
        weights = mask.to(x.dtype)[..., None]
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1)
        return self.proj(pooled)[:, None, :], mask.any(1, keepdim=True)


def avgpool(cfg, vision_dim, llm_dim):
    return AvgPool(vision_dim, llm_dim)


class LenientJudge:
    def __call__(self, question, prediction, reference):
        return reference.lower() in prediction.lower()


class PrefixJudge:
    """Configured and batched: right when the answer starts with the reference (case folded unless strict);
    each verdict comes with the judge's raw output."""

    batches = []  # the size of every batch it was given

    def __init__(self, strict=False):
        self.strict = strict

    def __call__(self, question, prediction, reference):
        return self.batch([(question, prediction, reference)])[0][0]

    def batch(self, items):
        PrefixJudge.batches.append(len(items))
        fold = (lambda t: t) if self.strict else str.lower
        return [(fold(p).startswith(fold(r)), f"{'strict' if self.strict else 'folded'}: {p!r} vs {r!r}")
                for _, p, r in items]
'''


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    """An installed package `ablate-testplugin 0.3`: a folder on sys.path with the module and its dist-info."""
    root = tmp_path / "site"
    (root / "ablate_testplugin").mkdir(parents=True)
    (root / "ablate_testplugin" / "__init__.py").write_text(PLUGIN)
    (root / "ablate_testplugin" / "broken.py").write_text("raise ImportError('needs the flux capacitor')\n")
    info = root / "ablate_testplugin-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ablate-testplugin\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [ablate.connectors]
        avgpool = ablate_testplugin:avgpool
        broken = ablate_testplugin.broken:thing

        [ablate.judges]
        lenient = ablate_testplugin:LenientJudge
        prefix = ablate_testplugin:PrefixJudge
        """))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    for registry in COMPONENT_KEYS.values():
        registry.refresh()
    yield root
    monkeypatch.undo()
    for registry in COMPONENT_KEYS.values():
        registry.refresh()
    sys.modules.pop("ablate_testplugin", None)


def test_plugins_are_listed_with_their_package_and_a_broken_one_disables_only_itself(plugin, capsys):
    assert main(["components", "list"]) == 0
    out = capsys.readouterr().out
    assert "avgpool    plugin ablate-testplugin 0.3 (ablate_testplugin:avgpool)" in out
    assert "lenient  plugin ablate-testplugin 0.3 (ablate_testplugin:LenientJudge)" in out
    broken = next(line for line in out.splitlines() if line.strip().startswith("broken"))
    assert "BROKEN: connector 'broken' from plugin ablate-testplugin 0.3" in broken
    assert "ImportError: needs the flux capacitor" in broken
    assert "resampler  built-in" in out  # the rest still works
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
def test_grid_workers_load_the_plugin(plugin, quick_store, quick):
    """Two spawned workers build a model with the plugin's connector (they find it through the entry point)."""
    from harness.experiment import Experiment
    from harness.grid import run_grid
    experiment = Experiment(name="plugin", path=Path("tests/test_plugins.py"), scale="tiny", baseline="lynx",
                            variants=("wo_adapter",), workers=2, overrides={**quick, "model.connector.kind": "avgpool"})
    store = quick_store
    outcome = run_grid(experiment, store)
    assert outcome.ok and len(outcome.finished) == 2, outcome.failed
    client = store.client()
    runs = client.search_runs([client.get_experiment_by_name("plugin").experiment_id], "tags.`ablate.kind` = 'run'")
    assert {r.data.tags["ablate.plugin.connector.avgpool"] for r in runs} == {
        "ablate-testplugin 0.3 (ablate_testplugin:avgpool)"}

"""The variant catalogue: every experiment file resolves, and every variant builds and trains at `tiny`."""

from pathlib import Path

import pytest
import torch

from harness.config.schema import STAGES
from harness.experiment import load_experiment
from harness.model import apply_freeze_policy
from harness.resolve import resolve
from harness.runner import build_for, stage_image_size
from harness.tracking import Store
from harness.variant import catalogue

REPO = Path(__file__).resolve().parent.parent
SMALL_WORLD = {
    "world.num_images": 200, "world.num_noisy": 100, "world.num_videos": 30, "world.num_text": 100,
    "world.samples_per_shard": 200, "model.llm.source": "random", "model.vision.weights": "random",
}


def test_the_catalogue_has_the_paper_design_space():
    variants = catalogue()
    assert len(variants) >= 24
    paper_rows = {v.name for v in variants.values() if v.paper and v.paper.startswith("Table 3")}
    assert paper_rows == {"lynx", "w_llama", "wo_diverse_prompts", "w_noisy_data", "w_cross_attn",
                          "w_cross_attn_tune_llm", "wo_high_res"}
    for variant in variants.values():
        module = __import__(f"variants.{Path(variant.source).stem}", fromlist=["_"])
        assert module.__doc__ and len(module.__doc__.split()) > 8, f"{variant.source} needs a docstring"


@pytest.mark.parametrize("path", sorted(REPO.glob("experiments/*.yaml")), ids=lambda p: p.name)
def test_every_experiment_file_resolves_and_verifies(path):
    experiment = load_experiment(path)
    runs = experiment.expand()
    assert len(runs) == len(experiment.all_variants) * len(experiment.seeds)
    assert len({r.key for r in runs}) == len(runs)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("catalogue"))


@pytest.mark.parametrize("name", sorted(catalogue()))
def test_every_variant_builds_and_trains_a_few_steps_at_tiny(name, store):
    torch.manual_seed(0)
    config = resolve(name, "tiny", cli={**SMALL_WORLD, "train.batch_size": 4}).config
    assets, model_cfg, model = build_for(config, store)
    from harness.data import WorldDataModule

    data = WorldDataModule(assets.world, config.data, assets.tokenizer, image_size=config.model.vision.image_size,
                           batch_size=4, seed=0)
    trained_any = False
    for stage_name in STAGES:
        stage = getattr(config.train, stage_name)
        if stage.steps == 0:
            continue
        apply_freeze_policy(model, model_cfg, stage)
        params = [p for p in model.parameters() if p.requires_grad]
        before = [p.detach().clone() for p in params]
        optimizer = torch.optim.AdamW(params, lr=1e-2)
        batches = iter(data.stage_dataloader(stage_name, stage_image_size(config, stage)))
        for _ in range(2):
            loss = model(**next(batches)).loss
            assert torch.isfinite(loss), f"{name} {stage_name}: loss {loss}"
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        assert any(not torch.equal(a, b) for a, b in zip(before, params, strict=True)), f"{name}: nothing trained"
        trained_any = True
    assert trained_any

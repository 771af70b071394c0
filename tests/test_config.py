"""Config resolution: layer order, validation errors that name file and key, hashing."""

import re

import pytest

from harness.config.files import parse_overrides, read_yaml
from harness.config.schema import STAGES, StageConfig
from harness.config.validate import STAGE_FIELDS, check_layer, to_flat_dict
from harness.errors import ConfigError
from harness.resolve import changed_keys, config_hash, resolve


def test_unknown_key_names_source_key_and_suggestion():
    with pytest.raises(ConfigError, match=r"exp\.yaml: unknown config key 'train\.finetune\.step' \(did you mean 'train\.finetune\.steps'\?\)"):
        check_layer({"train.finetune.step": 3}, "exp.yaml")


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(ConfigError, match=r"exp\.yaml: train\.batch_size must be an integer, got 'many' \(str\)"):
        check_layer({"train.batch_size": "many"}, "exp.yaml")


def test_bool_is_not_an_integer():
    with pytest.raises(ConfigError, match="train.finetune.steps must be an integer"):
        check_layer({"train.finetune.steps": True}, "exp.yaml")


def test_choice_error_lists_choices_and_suggests():
    with pytest.raises(ConfigError, match=r"data\.prompts must be one of 'diverse', 'fixed', got 'divers' \(did you mean 'diverse'\?\)"):
        check_layer({"data.prompts": "divers"}, "cli")


def test_scientific_notation_string_is_a_float():
    assert check_layer({"train.finetune.lr": "1e-4"}, "cli") == {"train.finetune.lr": 1e-4}


def test_optional_field_accepts_null():
    assert check_layer({"data.shards": None}, "cli") == {"data.shards": None}


def test_nested_mappings_and_dotted_keys_are_the_same_override():
    a = resolve("lynx", experiment={"train": {"finetune": {"steps": 7}}})
    b = resolve("lynx", experiment={"train.finetune.steps": 7})
    assert a.config == b.config and a.config.train.finetune.steps == 7


def test_layers_merge_in_fixed_order():
    # scale preset < variant delta < experiment < command line
    assert resolve("lynx").config.model.vision.image_size == 32  # from the tiny preset
    assert resolve("wo_adapter").config.model.adapter.kind == "none"  # the delta beats the baseline
    exp = {"model.adapter.kind": "bottleneck", "train.finetune.lr": 0.5}
    run = resolve("wo_adapter", experiment=exp, cli={"train.finetune.lr": 0.25})
    assert run.config.model.adapter.kind == "bottleneck"  # experiment beats the delta
    assert run.config.train.finetune.lr == 0.25  # command line beats the experiment


def test_hash_is_stable_and_tracks_settings_and_seed_not_labels():
    assert resolve("lynx").hash == resolve("lynx").hash
    assert resolve("lynx", seed=1).hash != resolve("lynx", seed=0).hash
    assert resolve("lynx", cli={"train.finetune.lr": 0.1}).hash != resolve("lynx").hash
    cfg = resolve("lynx").config
    cfg.variant = "renamed"
    assert config_hash(cfg) == resolve("lynx").hash


def test_unknown_scale_is_rejected_with_suggestion():
    with pytest.raises(ConfigError, match=r"unknown scale 'tinny' \(did you mean 'tiny'\?\)"):
        resolve("lynx", scale="tinny")


def test_unknown_component_name_is_rejected_after_merge():
    with pytest.raises(ConfigError, match=r"model\.connector\.kind: unknown connector 'resampeler' \(did you mean 'resampler'\?\)"):
        resolve("lynx", cli={"model.connector.kind": "resampeler"})


def test_unknown_eval_split_and_judge_fail_at_resolution():
    with pytest.raises(ConfigError, match=r"eval\.splits: unknown evaluation split 'openvqa_imgae' \(did you mean 'openvqa_image'\?\)"):
        resolve("lynx", cli={"eval.splits": "openvqa_imgae,mme"})
    with pytest.raises(ConfigError, match=r"eval\.judge\.name: unknown judge 'rule'"):
        resolve("lynx", cli={"eval.judge": "rule"})


def test_cross_field_rule_is_checked():
    with pytest.raises(ConfigError, match="hidden_size must be divisible by model.llm.num_heads"):
        resolve("lynx", cli={"model.llm.num_heads": 5})
    no_steps = {f"train.{stage}.steps": 0 for stage in STAGES}  # every stage, from the one list of stages
    with pytest.raises(ConfigError, match=r"the stages \(pretrain, high_res, finetune\) must train at least one step"):
        resolve("lynx", cli=no_steps)


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: smoke\nvariants: [a, b\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: line \d+, column \d+: malformed YAML"):
        read_yaml(path)


BOMB = "\n".join(["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"] + [
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)])


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    import tracemalloc

    path = tmp_path / "bomb.yaml"
    path.write_text(f"name: x\nbaseline: lynx\n{BOMB}\ndescription: *i\n")
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=r"bomb\.yaml: refused: the YAML expands to more than .* aliases"):
            read_yaml(path)
        with pytest.raises(ConfigError, match="override 'description' refused: its YAML value expands"):
            parse_overrides([f"description={{{BOMB.replace(chr(10), ', ')}, z: *i}}"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6, f"{peak / 1e6:.1f} MB allocated while refusing a bomb"


def test_yaml_deeper_or_larger_than_the_budget_is_refused(tmp_path):
    from harness.config.files import MAX_BYTES

    deep, big = tmp_path / "deep.yaml", tmp_path / "big.yaml"
    deep.write_text("name: " + "[" * 200 + "]" * 200 + "\n")
    big.write_text("name: x\ndescription: " + "y" * MAX_BYTES + "\n")
    with pytest.raises(ConfigError, match=r"deep\.yaml: refused: the YAML (nested more than 64|nests too deeply)"):
        read_yaml(deep)
    with pytest.raises(ConfigError, match=r"big\.yaml: refused: the YAML is [\d,]+ bytes; at most 1,000,000"):
        read_yaml(big)


def test_a_repeated_key_is_refused_with_both_lines(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("name: x\nseeds: [0]\nbaseline: lynx\nseeds: [1]\n")
    with pytest.raises(ConfigError, match=r"twice\.yaml: refused: the YAML repeats the key 'seeds' \(lines 2 and 4\)"):
        read_yaml(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="experiment file not found: .*nope.yaml"):
        read_yaml(tmp_path / "nope.yaml", "experiment file")


def test_cli_overrides_parse_yaml_scalars_and_reject_garbage():
    assert parse_overrides(["train.finetune.steps=5", "data.shards=null", "train.finetune.lr=1e-4"]) == {
        "train.finetune.steps": 5, "data.shards": None, "train.finetune.lr": "1e-4"}
    with pytest.raises(ConfigError, match="must look like key=value"):
        parse_overrides(["train.finetune.steps"])


def test_roles_map_to_concrete_backbones_of_the_scale():
    assert resolve("lynx").config.model.llm.source == "zoo:llm-instruct"
    assert resolve("w_llama").config.model.llm.source == "zoo:llm-base"
    small = resolve("small_vision").config.model.vision
    assert (small.weights, small.width) == ("zoo:vit-small", 48)


def test_explicit_setting_beats_a_role_derived_one():
    assert resolve("lynx", cli={"model.llm.source": "random"}).config.model.llm.source == "random"


def test_every_variant_differs_from_its_baseline_only_at_its_delta_at_every_scale():
    from harness.resolve import changed_keys, load_scale, verify_delta
    from harness.variant import catalogue

    for scale in ("tiny", "small", "base", "paper"):
        for variant in catalogue().values():
            if variant.baseline is None:
                continue
            run, base = resolve(variant.name, scale), resolve(variant.baseline, scale)
            verify_delta(run, base)
            changed = changed_keys(run, base)
            assert changed, f"{variant.name} is identical to {variant.baseline} at {scale}"
            preset = load_scale(scale)
            allowed = set().union(*({k} | preset.derived_keys(k) for k in variant.flat_delta()))
            assert set(changed) <= allowed


def test_a_stray_difference_is_refused():
    from harness.resolve import verify_delta

    run = resolve("wo_adapter", cli={"train.batch_size": 3})
    with pytest.raises(ConfigError, match=r"differs from its baseline 'lynx' outside its delta at train\.batch_size"):
        verify_delta(run, resolve("lynx"))


def test_re_pointing_a_local_name_or_replacing_its_weights_makes_a_new_run(tmp_path, monkeypatch):
    import dataclasses
    import shutil

    from harness.assets import source_identity

    for name, content in (("a", b"weights A" * 100), ("b", b"weights B" * 100)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(content)
        (tmp_path / name / "config.json").write_text('{"embed_dim": 64}')
    paths = tmp_path / "paths.yaml"
    monkeypatch.setenv("ABLATE_PATHS", str(paths))
    run = resolve("lynx", cli={"model.vision.weights": "local:vit"})

    def key_for(target: str) -> str:
        paths.write_text(f"vit: {tmp_path / target}\n")
        identity = source_identity(run.config)
        assert identity["model.vision.weights"].startswith(str(tmp_path / target))
        return dataclasses.replace(run, sources=tuple(identity.items())).key

    first = key_for("a")
    assert key_for("a") == first and first != run.hash
    assert key_for("b") != first  # the same `local:vit`, another checkpoint
    shutil.copytree(tmp_path / "a", tmp_path / "a-copy")
    assert key_for("a-copy") == first  # the same weights in another folder: the same run
    (tmp_path / "a" / "config.json").write_text('{"embed_dim": 32}')
    assert key_for("a") != first  # the same folder, its files changed


def test_run_keys_of_existing_stores_stay_put():
    """A run's key decides whether a store already holds it. These keys are the ones the shipped study's runs
    carry (docs/findings.md): a change that moves them makes every user's finished runs look new and retrain.
    Change them only on purpose (a preset or a training default that changes what is trained): the default
    `train.no_decay: 1d` did, so the world v6 study's keys are now reached with `train.no_decay=none`; the default
    `train.sequence_packing: true` did, so the stop-24 study's keys are reached with `train.sequence_packing=false`."""
    assert resolve("lynx", "small", seed=0).key == "744a2b607f12"
    assert resolve("lynx", "tiny", seed=0).key == "bf5aa829d33c"
    padded = {"train.sequence_packing": False}  # the layout of the runs trained before packing
    assert resolve("lynx", "small", seed=0, cli=padded).key == "1bf1028d11bb"
    assert resolve("lynx", "tiny", seed=0, cli=padded).key == "73d8a5c07f30"
    before = {**padded, "train.no_decay": "none"}  # the optimizer recipe of the world v6 study
    assert resolve("lynx", "small", seed=0, cli=before).key == "ae48be37e7a4"
    assert resolve("lynx", "tiny", seed=0, cli=before).key == "532d6cbdfa41"
    # A setting added later is out of the key at the value that reproduces the old runs, in it otherwise.
    assert resolve("lynx", "small", seed=0, cli={**before, "data.holdout_percent": 0}).key == "ae48be37e7a4"
    assert resolve("lynx", "small", seed=0, cli={**before, "data.holdout_percent": 5}).key != "ae48be37e7a4"
    # Stages name their trainable components (train.<stage>.trainable) instead of two flags; the variants that
    # train a backbone keep the keys they had with `train_llm` / `train_vision`.
    assert resolve("full_ft_llm", "small", seed=0, cli=padded).key == "dce0acf7eaf9"
    assert resolve("w_cross_attn_tune_llm", "small", seed=0, cli=padded).key == "7b97c4615b51"
    assert resolve("tune_vision", "small", seed=0, cli=padded).key == "0cd10c25aa40"


def test_a_stages_trainable_components_are_a_checked_set():
    written = check_layer({"train.finetune.trainable": ["llm", "connector", "llm", "fusion"]}, "exp.yaml")
    assert written["train.finetune.trainable"] == ["connector", "fusion", "llm"]  # once each, declared order
    assert check_layer({"train.finetune.trainable": "llm,adapters"}, "cli")["train.finetune.trainable"] == [
        "llm", "adapters"]  # `key=a,b` on a command line
    with pytest.raises(ConfigError, match=r"train.finetune.trainable must be one of .*got 'lm'.*did you mean 'llm'"):
        check_layer({"train.finetune.trainable": ["connector", "lm"]}, "exp.yaml")
    with pytest.raises(ConfigError, match=r"exp.yaml: 'train.finetune.train_llm' was replaced by "
                                          r"'train.finetune.trainable'.*\[connector, fusion, adapters, frames, llm\]"):
        check_layer({"train.finetune.train_llm": True}, "exp.yaml")
    # Another set than the default plus backbones is a training no earlier run had: its own key, its own param.
    frozen_connector = resolve("lynx", "tiny", cli={"train.finetune.trainable": ["fusion", "adapters", "frames"]})
    assert frozen_connector.key != resolve("lynx", "tiny").key
    same = resolve("lynx", "tiny", cli={"train.finetune.trainable": ["frames", "adapters", "fusion", "connector"]})
    assert same.key == resolve("lynx", "tiny").key  # the default set, written in another order


def test_a_checkpoint_saved_with_the_old_stage_flags_loads_as_the_same_training():
    """Checkpoints saved before stages listed their components hold `train_llm` / `train_vision`; `ablate eval` and
    re-scoring must still read them, as the training they were (the same run key)."""
    import dataclasses

    import yaml

    from harness.config.validate import build, flatten, upgrade_saved

    for variant in ("lynx", "w_cross_attn_tune_llm", "tune_vision"):
        run = resolve(variant, "small", seed=1)
        saved = flatten(yaml.safe_load(yaml.safe_dump(dataclasses.asdict(run.config))))
        for stage in STAGES:  # as a checkpoint of then has it
            trainable = saved.pop(f"train.{stage}.trainable")
            saved[f"train.{stage}.train_llm"] = "llm" in trainable
            saved[f"train.{stage}.train_vision"] = "vision" in trainable
        labels = {k: saved.pop(k) for k in ("variant", "scale", "seed")}
        loaded = build({**check_layer(upgrade_saved(saved), "config.yaml"), **labels})
        assert config_hash(loaded) == run.key
        assert loaded.train.finetune.trainable == run.config.train.finetune.trainable


POLISH = {"train.order": "pretrain,high_res,polish,finetune", "train.polish.steps": 7, "train.polish.lr": 2e-4,
          "train.polish.mixture": "finetune", "train.polish.resolution": "high",
          "train.polish.trainable": "connector,llm"}


def test_a_stage_is_added_by_naming_it_in_the_order_and_setting_its_keys():
    run = resolve("lynx", "tiny", cli=POLISH)
    stages = run.config.train.stages()
    assert [name for name, _ in stages] == ["pretrain", "high_res", "polish", "finetune"]
    polish = run.config.train.stage("polish")
    assert (polish.steps, polish.lr, polish.mixture, polish.resolution, polish.trainable) == (
        7, 2e-4, "finetune", "high", ["connector", "llm"])
    assert polish.warmup_frac == StageConfig().warmup_frac  # what it does not set keeps the stage defaults
    flat = to_flat_dict(run.config)
    assert flat["train.polish.steps"] == 7 and "train.extra" not in flat and not any("extra" in k for k in flat)
    lynx = resolve("lynx", "tiny")
    assert run.key != lynx.key
    # an added stage's keys are all new, those it leaves at the stage defaults too
    assert set(changed_keys(run, lynx)) == {"train.order", *(f"train.polish.{f}" for f in STAGE_FIELDS)}
    # nested YAML says the same; leaving a stage out of the order drops it
    nested = resolve("lynx", "tiny", experiment={"train": {"order": ["pretrain", "high_res", "polish", "finetune"],
                                                           "polish": {k.split(".")[2]: v for k, v in POLISH.items()
                                                                      if k.startswith("train.polish.")}}})
    assert nested.key == run.key
    assert [n for n, _ in resolve("lynx", "tiny", cli={"train.order": "pretrain,finetune"}).config.train.stages()] \
        == ["pretrain", "finetune"]


def test_the_papers_stages_keep_their_run_keys_now_that_stages_are_data():
    """`train.order` and each paper stage's `mixture` say what those stages did before they existed."""
    explicit = {"train.order": "pretrain,high_res,finetune", "train.pretrain.mixture": "pretrain",
                "train.high_res.mixture": "pretrain", "train.finetune.mixture": "finetune"}
    assert resolve("lynx", "small", seed=0, cli=explicit).key == resolve("lynx", "small", seed=0).key == "744a2b607f12"
    assert resolve("lynx", "small", cli={"train.high_res.mixture": "finetune"}).key != "744a2b607f12"


@pytest.mark.parametrize(("cli", "message"), [
    ({"train.order": "pretrain,polish,finetune"},
     r"train.order names the stage 'polish', which has no settings: set train.polish.steps"),
    ({"train.polish.steps": 5}, r"train.polish.\* set a stage that train.order does not list; add it where it "
                                r"trains, e.g. train.order=\[pretrain, high_res, finetune, polish\]"),
    ({"train.order": "pretrain,finetune,finetune"}, "train.order names a stage twice"),
    ({"train.polish.stepz": 5}, "unknown config key 'train.polish.stepz'"),
    ({"train.polish.mixture": "warmup", "train.order": "polish"}, "train.polish.mixture must be one of"),
    ({"train.finetun.steps": 5}, r"train.finetun.\* names no stage \(did you mean 'finetune'\?\); to add a stage"),
    ({"train.order": "pretrain,eval", "train.eval.steps": 3}, "'eval' cannot name a stage: use lower-case letters"),
    ({"train.order": "pretrain,Polish"}, "'Polish' cannot name a stage"),
])
def test_a_stage_list_that_does_not_add_up_says_what_to_write(cli, message):
    with pytest.raises(ConfigError, match=message):
        resolve("lynx", "tiny", cli=cli)


def test_an_added_stage_can_be_swept_and_is_listed_by_variants_diff(capsys, monkeypatch):
    from harness.search import _dimension

    assert _dimension("train.polish.lr", {"low": 1e-4, "high": 1e-2, "log": True}, "search").key == "train.polish.lr"
    assert _dimension("train.polish.steps", {"low": 1, "high": 9}, "search").integer
    test_a_variant_that_adds_a_stage_differs_from_its_baseline_only_at_its_delta(monkeypatch)
    from harness.cli import main

    assert main(["variants", "diff", "w_polish", "--scale", "tiny"]) == 0
    assert re.search(r"train\.polish\.steps +'\(none\)' -> 7\n", capsys.readouterr().out)


def test_a_variant_that_adds_a_stage_differs_from_its_baseline_only_at_its_delta(monkeypatch):
    import harness.variant as variants
    from harness.resolve import verify_delta

    polish = variants.Variant(name="w_polish", baseline="lynx", axis="training.stages",
                              description="a short finetune-mix stage that also trains the LLM, before finetuning",
                              delta={k: v.split(",") if k.endswith(("order", "trainable")) else v
                                     for k, v in POLISH.items() if k != "train.polish.resolution"})
    known = {**variants.catalogue(), "w_polish": polish}
    monkeypatch.setattr(variants, "catalogue", lambda: known)
    run = resolve("w_polish", "small")
    verify_delta(run, resolve("lynx", "small"))  # the stage's unset fields are its defaults, not a stray change
    assert run.config.train.stage("polish").resolution == "low"
    with pytest.raises(ConfigError, match="outside its delta at train.batch_size"):
        verify_delta(resolve("w_polish", "small", cli={"train.batch_size": 3}), resolve("lynx", "small"))

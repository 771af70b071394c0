"""Resolve a run's config: scale preset -> baseline -> variant delta -> experiment -> CLI, validated, hashed.

The order is fixed so the same inputs always give the same config. Each layer is checked on its own (so an error
names its file); cross-field rules and component names are checked once on the merged result.

A scale preset has three parts: `config` (sizes and budgets), `roles` (abstract role values such as
`model.llm.role: base` -> concrete keys such as `model.llm.source: zoo:llm-base`) and `zoo` (how the miniature
backbones are trained at that scale). Role-derived keys sit just above the preset's own config, so a variant,
an experiment or the command line can still set them explicitly.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.files import read_yaml
from harness.config.schema import STAGES, ModelConfig, RunConfig
from harness.config.validate import (
    STAGE_FIELDS,
    added_stage,
    as_former_flags,
    build,
    check_layer,
    flatten,
    to_flat_dict,
)
from harness.errors import AblateError, ConfigError, did_you_mean, one_of
from harness.variant import Variant, lineage

SCALES_DIR = Path(__file__).resolve().parent / "scales"
LABEL_KEYS = ("variant", "scale")  # names, not settings: excluded from the config hash
# How a trained model is scored, not what was trained: excluded from the run key, hashed into the evaluation key,
# so changing them re-scores saved checkpoints instead of retraining (`harness/rescore.py`).
EVAL_SECTION = "eval."
JUDGE_SECTION = "eval.judge."  # a judge change re-judges the saved predictions; every other eval key regenerates them
BOOKKEEPING_KEYS = ("train.checkpoint_every",)  # how a run is kept, not what it trains: not in the run key
# Settings added after stores already held runs, with the value that reproduces what runs trained before them:
# left out of the run key while they hold it, so adding a setting never makes every existing run look new.
NEUTRAL_WHEN_ADDED = {"data.holdout_percent": 0.0, "train.num_nodes": 1, "train.strategy": "auto",
                      "train.no_decay": "none", "train.order": list(STAGES), "train.pretrain.mixture": "pretrain",
                      "train.high_res.mixture": "pretrain", "train.finetune.mixture": "finetune",
                      "train.sequence_packing": False}
PRESET_SECTIONS = {"config", "roles", "zoo"}

Layer = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class ScalePreset:
    """A parsed scale preset file."""

    name: str
    source: str
    config: dict[str, Any]  # flat dotted keys
    roles: dict[str, dict[str, dict[str, Any]]]  # role key -> role value -> flat derived keys
    zoo: dict[str, Any]

    def derived_keys(self, role_key: str) -> set[str]:
        """Every key that some value of `role_key` sets."""
        return {k for values in self.roles.get(role_key, {}).values() for k in values}


@dataclass(frozen=True)
class ResolvedRun:
    """A validated run config with its identity: the hash of every training setting, the seed included (not the
    evaluation settings, which have keys of their own)."""

    config: RunConfig
    variant: Variant
    hash: str
    layers: tuple[Layer, ...]  # (source, flat overrides) in merge order

    sources: tuple[tuple[str, str], ...] = ()  # (config key, "PATH @ FINGERPRINT") of local backbones

    @property
    def label(self) -> str:
        """How logs and reports name the run: 'w_llama seed 1'."""
        return f"{self.variant.name} seed {self.config.seed}"

    @property
    def key(self) -> str:
        """Stable identity of the run: the config hash (the seed is part of the config), and the content
        fingerprint of its local backbones, so re-pointing a `local:` name to other weights or replacing a
        checkpoint makes a new run, while moving the same weights elsewhere does not."""
        if not self.sources:
            return self.hash
        contents = [(key, value.rsplit(" @ ", 1)[-1]) for key, value in self.sources]  # fingerprints, not paths
        return hashlib.sha256(json.dumps([self.hash, *contents]).encode()).hexdigest()[:12]

    @property
    def eval_key(self) -> str:
        """Identity of how the run is scored: every `eval.*` setting."""
        return eval_hash(self.config)

    @property
    def generation_key(self) -> str:
        """Identity of what the model is asked and how it decodes: the `eval.*` settings but the judge. Runs with
        the same one have the same predictions, whatever judge scores them."""
        return eval_hash(self.config, judge=False)


def list_scales() -> list[str]:
    """Names of the scale presets shipped in harness/scales."""
    return sorted(p.stem for p in SCALES_DIR.glob("*.yaml"))


@functools.cache
def load_scale(scale: str) -> ScalePreset:
    """Read and check the preset for `scale`."""
    scales = list_scales()
    if scale not in scales:
        raise ConfigError(f"unknown scale '{scale}'{did_you_mean(scale, scales)}; known: {one_of(scales)}")
    path = SCALES_DIR / f"{scale}.yaml"
    source = f"scale preset {path.name}"
    raw = read_yaml(path, "scale preset")
    for section in raw:
        if section not in PRESET_SECTIONS:
            raise ConfigError(f"{source}: unknown section '{section}'{did_you_mean(section, PRESET_SECTIONS)}")
    config = check_layer(flatten(raw.get("config") or {}), source)
    roles: dict[str, dict[str, dict[str, Any]]] = {}
    for role_key, mapping in (raw.get("roles") or {}).items():
        check_layer({role_key: next(iter(mapping))}, f"{source} roles")  # the role key itself must exist
        roles[role_key] = {
            value: check_layer(flatten(keys), f"{source} roles.{role_key}.{value}") for value, keys in mapping.items()
        }
    return ScalePreset(scale, source, config, roles, dict(raw.get("zoo") or {}))


def _digest(flat: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:12]


def training_settings(config: RunConfig) -> dict[str, Any]:
    """The flat settings that determine the trained weights: all but the labels and the evaluation settings,
    each stage's `trainable` list written as the flags it replaced wherever they can say it (`as_former_flags`)."""
    return as_former_flags({k: v for k, v in to_flat_dict(config).items()
                            if k not in LABEL_KEYS and k not in BOOKKEEPING_KEYS and not k.startswith(EVAL_SECTION)})


def eval_settings(config: RunConfig, judge: bool = True) -> dict[str, Any]:
    """The flat `eval.*` settings (without the judge's when `judge` is False). A judge without options is written
    `eval.judge: <name>`, as before judges took options, so runs evaluated then keep their evaluation key."""
    settings = {k: v for k, v in to_flat_dict(config).items()
                if k.startswith(EVAL_SECTION) and (judge or not k.startswith(JUDGE_SECTION))}
    if judge and not settings.get(f"{JUDGE_SECTION}options"):
        settings.pop(f"{JUDGE_SECTION}options", None)
        settings["eval.judge"] = settings.pop(f"{JUDGE_SECTION}name")
    from harness.evaluation.splits import item_versions, parse_splits

    if versions := item_versions(parse_splits(config.eval.splits)):  # a package's splits: their items' versions
        settings["eval.split_items"] = versions
    return settings


def config_hash(config: RunConfig) -> str:
    """12 hex digits identifying what a run trains: every setting, the seed included, but not its labels and not
    how it is evaluated."""
    return _digest({k: v for k, v in training_settings(config).items()
                    if not (k in NEUTRAL_WHEN_ADDED and v == NEUTRAL_WHEN_ADDED[k])})


def eval_hash(config: RunConfig, judge: bool = True) -> str:
    """12 hex digits identifying how a run is evaluated (with or without its judge)."""
    return _digest(eval_settings(config, judge))


def _merge(layers: list[Layer]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for source, values in layers:
        merged.update(check_layer(values, source))
    return merged


def _role_layers(preset: ScalePreset, values: dict[str, Any]) -> list[Layer]:
    """The derived keys for the role values a run ends up with."""
    defaults = to_flat_dict(RunConfig())
    layers = []
    for role_key, mapping in preset.roles.items():
        value = values.get(role_key, defaults[role_key])
        if value not in mapping:
            raise ConfigError(
                f"{preset.source}: no backbone for {role_key}={value!r}; the preset maps {one_of(mapping)}"
            )
        layers.append((f"{preset.source} roles.{role_key}.{value}", mapping[value]))
    return layers


def preset_model(scale: str, settings: dict[str, Any] | None = None) -> ModelConfig:
    """The scale preset's model config with `settings` (flat keys, roles included) applied: no variant involved.
    This is what the zoo builds its backbones from, so the zoo depends on the preset, never on a variant."""
    preset = load_scale(scale)
    upper: list[Layer] = [("zoo", flatten(settings or {}))]
    merged = _merge([(preset.source, preset.config), *_role_layers(preset, _merge(upper)), *upper])
    return build({**merged, "variant": "", "scale": scale, "seed": 0}).model


def resolve(
    variant: str,
    scale: str = "tiny",
    seed: int = 0,
    experiment: dict[str, Any] | None = None,
    experiment_source: str = "experiment",
    cli: dict[str, Any] | None = None,
) -> ResolvedRun:
    """Merge the layers for one run of `variant` and return it validated and hashed."""
    chain = lineage(variant)
    preset = load_scale(scale)
    upper: list[Layer] = [(f"{v.source} (variant '{v.name}')", v.flat_delta()) for v in chain]
    upper.append((experiment_source, flatten(experiment or {})))
    upper.append(("command line", flatten(cli or {})))
    # Roles are looked up with their final values, then sit just above the preset: explicit settings win.
    roles = _role_layers(preset, _merge(upper))
    layers = [(preset.source, preset.config), *roles, *upper]
    merged = _merge(layers)
    for label, value in (("variant", variant), ("scale", scale), ("seed", seed)):
        if label in merged and merged[label] != value:
            raise ConfigError(f"'{label}' is set by the experiment or command line flags, not as a config key")
        merged[label] = value
    config = build(merged)
    check_consistency(config)
    return ResolvedRun(config, chain[-1], config_hash(config), tuple(layers))


def verify_delta(run: ResolvedRun, baseline: ResolvedRun) -> None:
    """Refuse a variant whose resolved config differs from its baseline's outside its delta and derived keys."""
    preset = load_scale(run.config.scale)
    allowed = set()
    for variant in lineage(run.variant.name):
        if variant.name == baseline.variant.name:
            allowed.clear()  # differences above the baseline are shared by both
            continue
        for key in variant.flat_delta():
            allowed |= {key} | preset.derived_keys(key)
            if stage := added_stage(key):  # a stage the baseline lacks: its other settings are the defaults
                allowed |= {f"train.{stage}.{field}" for field in STAGE_FIELDS}
    stray = [k for k in changed_keys(run, baseline) if k not in allowed]
    if stray:
        raise ConfigError(
            f"variant '{run.variant.name}' differs from its baseline '{baseline.variant.name}' outside its delta "
            f"at {', '.join(stray)}; a controlled comparison changes only the keys the variant declares"
        )


def changed_keys(run: ResolvedRun, baseline: ResolvedRun) -> list[str]:
    """The keys whose resolved values differ between two runs (labels and seed excluded)."""
    new, old = to_flat_dict(run.config), to_flat_dict(baseline.config)
    keys = [*new, *(k for k in old if k not in new)]  # an added stage's keys exist on one side only
    return [k for k in keys if new.get(k, _ABSENT) != old.get(k, _ABSENT) and k not in LABEL_KEYS and k != "seed"]


_ABSENT = object()


def check_stages(train) -> None:
    """`train.order` names each stage once, and each added stage that has settings is in it."""
    unknown = [name for name in train.order if name not in STAGES and name not in train.extra]
    if unknown:
        raise ConfigError(f"train.order names the stage '{unknown[0]}', which has no settings: set train.{unknown[0]}"
                          f".steps (and lr, mixture, resolution, trainable as needed), or use one of "
                          f"{one_of([*STAGES, *train.extra])}")
    if len(set(train.order)) != len(train.order):
        raise ConfigError(f"train.order names a stage twice: {train.order}")
    unlisted = [name for name in train.extra if name not in train.order]
    if unlisted:
        name = unlisted[0]
        if typo := did_you_mean(name, STAGES):  # `train.finetun.steps` is a typo before it is a new stage
            raise ConfigError(f"train.{name}.* names no stage{typo}; to add a stage '{name}', also list it in "
                              "train.order")
        raise ConfigError(f"train.{name}.* set a stage that train.order does not list; add it where it trains, "
                          f"e.g. train.order=[{', '.join([*train.order, name])}]")


def check_consistency(config: RunConfig) -> None:
    """Rules that involve several keys or a component registry."""
    from harness.components import COMPONENT_KEYS, JUDGES
    from harness.evaluation.splits import parse_splits

    m, t = config.model, config.train
    check_stages(t)
    try:
        parse_splits(config.eval.splits)  # an unknown split must fail now, not after training
    except AblateError as err:
        raise ConfigError(f"eval.splits: {err}") from None
    flat = to_flat_dict(config)
    for key, registry in COMPONENT_KEYS.items():
        value = flat[key]
        if value not in registry:
            raise ConfigError(
                f"{key}: unknown {registry.kind} '{value}'{did_you_mean(value, registry)}; known: {one_of(registry)}"
            )
        if registry.origin(value).kind == "plugin":  # a broken plugin fails here, before anything is written
            problem = registry.check(value)
            if problem:
                raise ConfigError(f"{key}: {problem}")
    if config.eval.judge.options:  # only a judge given options is loaded now, to check it takes them
        from harness.evaluation.judges import check_judge_options

        try:
            check_judge_options(config.eval.judge.name, JUDGES.get(config.eval.judge.name), config.eval.judge.options)
        except AblateError as err:
            raise ConfigError(str(err)) from None
    rules = [
        (m.vision.width % m.vision.heads == 0, "model.vision.width must be divisible by model.vision.heads"),
        (m.vision.image_size % m.vision.patch_size == 0,
         "model.vision.image_size must be divisible by model.vision.patch_size"),
        (m.vision.high_res_size % m.vision.patch_size == 0,
         "model.vision.high_res_size must be divisible by model.vision.patch_size"),
        (m.llm.hidden_size % m.llm.num_heads == 0, "model.llm.hidden_size must be divisible by model.llm.num_heads"),
        (m.llm.hidden_size % m.adapter.reduction == 0,
         "model.llm.hidden_size must be divisible by model.adapter.reduction"),
        (m.adapter.every >= 1, "model.adapter.every must be at least 1"),
        (m.fusion.every >= 1, "model.fusion.every must be at least 1"),
        (1 <= config.data.video_frames <= m.vision.max_frames,
         "data.video_frames must be between 1 and model.vision.max_frames"),
        (config.data.vqa_weight >= 0, "data.vqa_weight must not be negative"),
        (0 <= config.data.detailed_captions <= 1, "data.detailed_captions must be a share between 0 and 1"),
        (0 <= config.data.holdout_percent <= 50,
         f"data.holdout_percent must be a percentage between 0 and 50, got {config.data.holdout_percent}"),
        (bool(t.stages()), f"the stages ({', '.join(t.order)}) must train at least one step between them"),
        (t.batch_size >= 1, f"train.batch_size must be at least 1, got {t.batch_size}"),
        (t.devices >= 1 and t.num_nodes >= 1,
         f"train.devices and train.num_nodes must be at least 1, got {t.devices} and {t.num_nodes}"),
        (t.checkpoint_every >= 0,
         f"train.checkpoint_every must be 0 (stage ends only) or a number of steps, got {t.checkpoint_every}"),
    ]
    for name, s in t.stages(active_only=False):
        rules += [
            (s.steps >= 0, f"train.{name}.steps must be 0 (skip the stage) or more, got {s.steps}"),
            (0.0 <= s.warmup_frac < 1.0, f"train.{name}.warmup_frac must be in [0, 1), got {s.warmup_frac}"),
            (s.lr > 0, f"train.{name}.lr must be positive, got {s.lr}"),
        ]
    for ok, message in rules:
        if not ok:
            raise ConfigError(f"resolved config for variant '{config.variant}': {message}")

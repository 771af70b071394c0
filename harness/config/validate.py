"""Check dotted-key overrides against the typed schema and build the dataclass tree.

A layer of configuration (a scale preset, a variant delta, an experiment's overrides, CLI `key=value`s) is a flat
mapping from dotted keys to values. Each layer is checked on its own so an error can name the file it came from,
the dotted key, and a did-you-mean suggestion.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from harness.config.schema import DEFAULT_TRAINABLE, STAGES, RunConfig, StageConfig, TrainConfig
from harness.errors import ConfigError, did_you_mean, one_of


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Turn nested dicts into dotted keys: {'train': {'lr': 1}} -> {'train.lr': 1}. Dotted keys pass through.
    A schema field that is itself a mapping (a judge's `options`) stays one value."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted not in MAPPING_LEAVES:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def schema_fields(cls: type = RunConfig, prefix: str = "") -> dict[str, Any]:
    """Every leaf key of the schema with its resolved type annotation: {'train.lr': float, ...}."""
    hints = typing.get_type_hints(cls)
    leaves: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            leaves.update(schema_fields(hint, f"{prefix}{f.name}."))
        else:
            leaves[f"{prefix}{f.name}"] = hint
    return leaves


# Stages beyond the paper's three are written `train.<name>.<field>` like theirs and held in `train.extra`, which is
# not itself a key a layer writes.
EXTRA_STAGES = "train.extra"
LEAVES = {k: hint for k, hint in schema_fields().items() if k != EXTRA_STAGES}
MAPPING_LEAVES = frozenset(k for k, hint in LEAVES.items() if get_origin(hint) is dict)
STAGE_FIELDS = schema_fields(StageConfig)
TRAIN_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))
STAGE_NAME = re.compile(r"[a-z][a-z0-9_]*")
# Names an added stage may not take: the train section's own keys, the config's sections, and "eval" (the
# evaluation's time and feature logs are keyed like a stage's).
RESERVED_STAGE_NAMES = TRAIN_FIELDS | {f.name for f in dataclasses.fields(RunConfig)} | {"eval"}


def check_stage_name(name: str, source: str) -> None:
    """An added stage's name must be a lower-case identifier that is not reserved."""
    if not STAGE_NAME.fullmatch(name) or name in RESERVED_STAGE_NAMES:
        raise ConfigError(f"{source}: '{name}' cannot name a stage: use lower-case letters, digits and _, and none "
                          f"of {', '.join(sorted(RESERVED_STAGE_NAMES))}")


def added_stage(key: str) -> str | None:
    """The stage name of `train.<name>.<stage field>` when `name` is not one of the paper's stages (an added one)."""
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "train" and parts[2] in STAGE_FIELDS and parts[1] not in TRAIN_FIELDS:
        return parts[1]
    return None


def leaf_type(key: str) -> Any | None:
    """The schema type of a dotted key, an added stage's included; None for an unknown key."""
    if key in LEAVES:
        return LEAVES[key]
    return STAGE_FIELDS[key.rsplit(".", 1)[1]] if added_stage(key) else None
# The components whose `train.<stage>.train_<part>` flag each stage had before its `trainable` list replaced them
# (the others always trained). `upgrade_saved` and `as_former_flags` translate between the two ways of saying it.
FORMER_FLAGS = ("llm", "vision")
# Keys that existed once, with what to write instead.
REPLACED = {
    f"train.{stage}.train_{part}": (
        f"'train.{stage}.train_{part}' was replaced by 'train.{stage}.trainable', the list of components the stage "
        f"trains; to train the {part} too, write train.{stage}.trainable: "
        f"[{', '.join([*DEFAULT_TRAINABLE, part])}]")
    for stage in STAGES for part in FORMER_FLAGS
}
# Shorthands a layer may use: `eval.judge: exact` names the judge and sets it no options.
SHORTHANDS = {"eval.judge": ("eval.judge.name", {"eval.judge.options": {}})}


def coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    """Return `value` as the type `hint` asks for, or raise a ConfigError naming source and key."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return coerce(key, value, option, source)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if origin is Literal:
        choices = [str(c) for c in get_args(hint)]
        if value not in get_args(hint):
            raise ConfigError(
                f"{source}: {key} must be one of {one_of(choices)}, got {value!r}{did_you_mean(value, choices)}"
            )
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        # YAML reads `1e-4` as a string (it wants `1.0e-4`); researchers write it anyway, so accept it.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    elif get_origin(hint) is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return dict(value)
    elif get_origin(hint) is list:
        if isinstance(value, str):  # `key=a,b` on a command line
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, (list, tuple)):
            (item,) = get_args(hint)
            items = [coerce(key, v, item, source) for v in value]
            if get_origin(item) is Literal:  # a set of choices: each once, in their declared order
                items = [c for c in get_args(item) if c in items]
            return items
    else:  # pragma: no cover - a schema field of a type this validator does not know is a bug
        raise TypeError(f"unsupported schema type {hint!r} for {key}")
    raise ConfigError(f"{source}: {key} must be {_type_name(hint)}, got {value!r} ({type(value).__name__})")


def _type_name(hint: Any) -> str:
    if get_origin(hint) is dict:
        return "a mapping of names to values"
    if get_origin(hint) is list:
        (item,) = get_args(hint)
        choices = f" of {one_of([str(c) for c in get_args(item)])}" if get_origin(item) is Literal else ""
        return f"a list{choices}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def check_layer(layer: dict[str, Any], source: str) -> dict[str, Any]:
    """Validate one flat layer of overrides; return it with values coerced to their schema types."""
    checked = {}
    for key, value in _expand_shorthands(layer).items():
        if key in REPLACED:
            raise ConfigError(f"{source}: {REPLACED[key]}")
        if (stage := added_stage(key)) and stage not in STAGES:
            check_stage_name(stage, source)
        hint = leaf_type(key)
        if hint is None:
            raise ConfigError(f"{source}: unknown config key '{key}'{did_you_mean(key, LEAVES)}")
        checked[key] = coerce(key, value, hint, source)
        if key == "train.order":
            for name in checked[key]:
                if name not in STAGES:
                    check_stage_name(name, source)
    return checked


def upgrade_saved(flat: dict[str, Any]) -> dict[str, Any]:
    """A complete config saved before a setting was replaced (a checkpoint's config.yaml), in today's keys: each
    stage's `train_llm` / `train_vision` flags become its `trainable` list. Only for saved configs, which hold every
    setting; a layer a person writes is told what to write instead (`REPLACED`)."""
    out = _added_stages_as_written(flat)  # an added stage is saved inside `train.extra`
    for stage in STAGES:
        flags = {part: out.pop(f"train.{stage}.train_{part}", None) for part in FORMER_FLAGS}
        if any(v is not None for v in flags.values()) and f"train.{stage}.trainable" not in out:
            out[f"train.{stage}.trainable"] = [*DEFAULT_TRAINABLE, *(part for part, on in flags.items() if on)]
    return out


def as_former_flags(settings: dict[str, Any]) -> dict[str, Any]:
    """The inverse of `upgrade_saved`, for run keys and MLflow params: `train.<stage>.trainable` as the flags it
    replaced whenever the list is the default one plus any of `FORMER_FLAGS`, so a run keeps the key and params it
    had before stages named their components, and stores keep their runs. Any other list (a frozen connector, say)
    is a training no earlier run had, and stays as it is."""
    out = dict(settings)
    for stage in STAGES:
        key = f"train.{stage}.trainable"
        if key in out and set(out[key]) - set(FORMER_FLAGS) == set(DEFAULT_TRAINABLE):
            trainable = out.pop(key)
            out |= {f"train.{stage}.train_{part}": part in trainable for part in FORMER_FLAGS}
    return out


def _expand_shorthands(layer: dict[str, Any]) -> dict[str, Any]:
    expanded: dict[str, Any] = {}
    for key, value in layer.items():
        if key in SHORTHANDS and not isinstance(value, dict):
            full, implied = SHORTHANDS[key]
            expanded.update({full: value, **{k: v for k, v in implied.items() if k not in layer}})
        else:
            expanded[key] = value
    return expanded


def build(values: dict[str, Any]) -> RunConfig:
    """Build a RunConfig from defaults plus already-checked flat values."""
    config = RunConfig()
    for key, value in values.items():
        *parents, leaf = key.split(".")
        if name := added_stage(key):
            setattr(config.train.extra.setdefault(name, StageConfig()), leaf, value)
            continue
        node = config
        for part in parents:
            node = getattr(node, part)
        setattr(node, leaf, value)
    return config


def to_flat_dict(config: RunConfig) -> dict[str, Any]:
    """The resolved config as dotted keys, in schema order; an added stage's settings as `train.<name>.<field>`."""
    return _added_stages_as_written(flatten(dataclasses.asdict(config)))


def _added_stages_as_written(flat: dict[str, Any]) -> dict[str, Any]:
    """`train.extra.<name>.<field>` (where the dataclasses hold an added stage) as `train.<name>.<field>` (how a
    layer writes it), and no `train.extra` key itself."""
    prefix = EXTRA_STAGES + "."
    return {(f"train.{k[len(prefix):]}" if k.startswith(prefix) else k): v for k, v in flat.items()
            if k != EXTRA_STAGES}

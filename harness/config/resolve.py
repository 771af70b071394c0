"""Resolve a run's config: scale preset -> baseline -> variant delta -> experiment -> CLI, validated, hashed.

The order is fixed so the same inputs always give the same config. Each layer is checked on its own (so an error
names its file); cross-field rules and component names are checked once on the merged result.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.files import read_yaml
from harness.config.schema import RunConfig
from harness.config.validate import build, check_layer, flatten, to_flat_dict
from harness.errors import ConfigError, did_you_mean, one_of
from harness.variant import Variant, lineage

SCALES_DIR = Path(__file__).resolve().parent.parent / "scales"
LABEL_KEYS = ("variant", "scale")  # names, not settings: excluded from the config hash


@dataclass(frozen=True)
class ResolvedRun:
    """A validated run config with its identity (hash of every setting and the seed)."""

    config: RunConfig
    variant: Variant
    hash: str
    layers: tuple[tuple[str, dict[str, Any]], ...]  # (source, flat overrides) in merge order

    @property
    def key(self) -> str:
        """Stable identity of the run: config hash (the seed is part of the config)."""
        return self.hash


def list_scales() -> list[str]:
    """Names of the scale presets shipped in harness/scales."""
    return sorted(p.stem for p in SCALES_DIR.glob("*.yaml"))


def scale_layer(scale: str) -> tuple[str, dict[str, Any]]:
    """The preset for `scale` as a (source, flat overrides) layer."""
    scales = list_scales()
    if scale not in scales:
        raise ConfigError(f"unknown scale '{scale}'{did_you_mean(scale, scales)}; known: {one_of(scales)}")
    path = SCALES_DIR / f"{scale}.yaml"
    return f"scale preset {path.name}", flatten(read_yaml(path, "scale preset"))


def config_hash(config: RunConfig) -> str:
    """12 hex digits identifying every setting of a run, including the seed but not its labels."""
    flat = {k: v for k, v in to_flat_dict(config).items() if k not in LABEL_KEYS}
    payload = json.dumps(flat, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


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
    layers = [scale_layer(scale)]
    layers += [(f"{v.source} (variant '{v.name}')", v.flat_delta()) for v in chain]
    layers.append((experiment_source, flatten(experiment or {})))
    layers.append(("command line", flatten(cli or {})))

    merged: dict[str, Any] = {}
    for source, values in layers:
        merged.update(check_layer(values, source))
    for label, value in (("variant", variant), ("scale", scale), ("seed", seed)):
        if label in merged and merged[label] != value:
            raise ConfigError(f"'{label}' is set by the experiment or command line flags, not as a config key")
        merged[label] = value
    config = build(merged)
    check_consistency(config)
    return ResolvedRun(config, chain[-1], config_hash(config), tuple(layers))


def check_consistency(config: RunConfig) -> None:
    """Rules that involve several keys or a component registry."""
    from harness.model import ADAPTERS, CONNECTORS  # deferred: importing the model pulls in torch

    m = config.model
    for key, value, registry in (
        ("model.connector.kind", m.connector.kind, CONNECTORS),
        ("model.adapter.kind", m.adapter.kind, ADAPTERS),
    ):
        if value not in registry:
            raise ConfigError(
                f"{key}: unknown {registry.kind} '{value}'{did_you_mean(value, registry)}; "
                f"known: {one_of(registry)}"
            )
    rules = [
        (m.vision.width % m.vision.heads == 0, "model.vision.width must be divisible by model.vision.heads"),
        (m.vision.image_size % m.vision.patch_size == 0,
         "model.vision.image_size must be divisible by model.vision.patch_size"),
        (m.llm.hidden_size % m.llm.num_heads == 0, "model.llm.hidden_size must be divisible by model.llm.num_heads"),
        (m.llm.hidden_size % m.adapter.reduction == 0,
         "model.llm.hidden_size must be divisible by model.adapter.reduction"),
        (m.adapter.every >= 1, "model.adapter.every must be at least 1"),
        (config.train.max_steps >= 1, "train.max_steps must be at least 1"),
        (config.train.batch_size >= 1, "train.batch_size must be at least 1"),
        (0.0 <= config.train.warmup_frac < 1.0, "train.warmup_frac must be in [0, 1)"),
        (config.train.lr > 0, "train.lr must be positive"),
        (config.eval.num_beams >= 1, "eval.num_beams must be at least 1"),
    ]
    for ok, message in rules:
        if not ok:
            raise ConfigError(f"resolved config for variant '{config.variant}': {message}")

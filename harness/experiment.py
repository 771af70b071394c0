"""Experiment files: which variants, seeds, scale and shared overrides make up a grid of controlled runs.

```yaml
name: smoke                 # MLflow experiment and grid name
scale: tiny                 # a preset in harness/scales
baseline: lynx              # the reference every delta is reported against
variants: [wo_adapter, linear_projector]
seeds: [0]
workers: 1                  # parallel worker processes
overrides: {train.max_steps: 150}   # applied to every run: the budget is identical across variants
search: {space: {train.finetune.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}}   # `ablate sweep run` only
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config.files import read_yaml
from harness.errors import ConfigError, did_you_mean, one_of
from harness.resolve import ResolvedRun, resolve, verify_delta
from harness.search import Search, parse_search

KEYS = {"name", "description", "scale", "baseline", "variants", "seeds", "workers", "overrides", "search"}


@dataclass(frozen=True)
class Experiment:
    """A validated experiment file."""

    name: str
    path: Path
    scale: str
    baseline: str
    variants: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    workers: int = 1
    description: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    search: Search | None = None  # what `ablate sweep run` tunes (harness/search.py)

    @property
    def all_variants(self) -> tuple[str, ...]:
        """The baseline first, then the variants, without repeats."""
        return tuple(dict.fromkeys((self.baseline, *self.variants)))

    def expand(self, cli: dict[str, Any] | None = None,
               per_variant: dict[str, dict[str, Any]] | None = None) -> list[ResolvedRun]:
        """Resolve and verify every (variant, seed) run; any invalid one fails the grid before anything runs.
        `per_variant`: settings for one variant's runs only (each variant's best sweep settings); each delta is
        verified without them, since they differ between variants on purpose."""
        def run(variant: str, seed: int, own: bool = True) -> ResolvedRun:
            mine = (per_variant or {}).get(variant, {}) if own else {}
            return resolve(variant, self.scale, seed, self.overrides, str(self.path), {**(cli or {}), **mine})

        runs = [run(variant, seed) for variant in self.all_variants for seed in self.seeds]
        by_key: dict[str, ResolvedRun] = {}
        for r in runs:
            if r.variant.baseline is not None:
                plain = run(r.variant.name, r.config.seed, own=False) if per_variant else r
                verify_delta(plain, run(r.variant.baseline, r.config.seed, own=False))
            if r.key in by_key:
                raise ConfigError(
                    f"{self.path}: variants '{by_key[r.key].variant.name}' and '{r.variant.name}' resolve to the "
                    f"same config (seed {r.config.seed}): an override in the experiment or on the command line "
                    "cancels a delta"
                )
            by_key[r.key] = r
        return runs


def load_experiment(path: str | Path, scale: str | None = None, workers: int | None = None,
                    seeds: str | None = None) -> Experiment:
    """Read and check an experiment file; `scale`/`workers`/`seeds` ("0,1") given on the command line win over
    the file's."""
    path = Path(path)
    raw = read_yaml(path, "experiment file")
    for key in raw:
        if key not in KEYS:
            raise ConfigError(f"{path}: unknown experiment key '{key}'{did_you_mean(key, KEYS)}; known: {one_of(KEYS)}")
    for key in ("name", "baseline"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigError(f"{path}: '{key}' is required and must be a string")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", raw["name"]):
        raise ConfigError(f"{path}: name '{raw['name']}' may only use letters, digits, '_', '.' and '-'")
    variants = raw.get("variants", [])
    if not isinstance(variants, list) or not all(isinstance(v, str) for v in variants):
        raise ConfigError(f"{path}: 'variants' must be a list of variant names")
    if seeds is not None:
        try:
            seeds = [int(s) for s in seeds.split(",")]
        except ValueError:
            raise ConfigError(f"--seeds {seeds!r}: expected comma-separated integers, e.g. --seeds 0,1,2") from None
    else:
        seeds = raw.get("seeds", [0])
    is_int = lambda s: isinstance(s, int) and not isinstance(s, bool)  # noqa: E731
    if not isinstance(seeds, list) or not seeds or not all(is_int(s) for s in seeds):
        raise ConfigError(f"{path}: 'seeds' must be a non-empty list of integers, e.g. [0, 1, 2]")
    overrides = raw.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{path}: 'overrides' must be a mapping of config keys to values")
    n_workers = workers if workers is not None else raw.get("workers", 1)
    if not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < 1:
        raise ConfigError(f"{path}: 'workers' must be a positive integer, got {n_workers!r}")
    return Experiment(
        name=raw["name"],
        path=path,
        scale=scale or str(raw.get("scale", "tiny")),
        baseline=raw["baseline"],
        variants=tuple(variants),
        seeds=tuple(seeds),
        workers=n_workers,
        description=str(raw.get("description", "")),
        overrides=overrides,
        search=parse_search(raw["search"], str(path)) if "search" in raw else None,
    )

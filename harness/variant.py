"""Variants: named, documented, controlled deltas from a baseline, discovered from `variants/` and entry points.

A variant file declares one or more module-level `Variant(...)` objects. Third-party packages publish theirs
under the `ablate.variants` entry-point group (the entry point may name a Variant, a list of them, or a module).
Discovery fails loudly on a file that raises on import (naming it), duplicate names, an unknown baseline, a
baseline cycle, or a delta key that is not a config key.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import traceback
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from harness.config.validate import check_layer, flatten
from harness.errors import RegistryError, did_you_mean, one_of
from harness.evaluation.scoring import item_metric

ENTRY_POINT_GROUP = "ablate.variants"


@dataclass(frozen=True)
class Variant:
    """One design choice to compare: `delta` holds the dotted config keys it changes from `baseline`."""

    name: str
    axis: str  # the design axis, e.g. "network.fusion", "data.noise"; "baseline" for a root
    description: str  # one line
    baseline: str | None = None  # None only for a root (the study's baseline itself)
    delta: dict[str, Any] = field(default_factory=dict)
    paper: str | None = None  # where the paper reports this comparison, e.g. "Table 3: w/ LLaMA"
    # The paper's numbers for this variant by metric (e.g. {"openvqa_image/acc": 70.86}); reports compare the
    # direction of the paper's difference from the baseline with the measured one.
    paper_scores: dict[str, float] = field(default_factory=dict)
    # The per-item metric where the paper's mechanism acts (`harness.evaluation.scoring.item_metric` names, e.g.
    # "openvqa_image/OCR/acc" for the resolution ablation); declared up front, so a verdict cannot pick its metric.
    mechanism: str | None = None
    source: str = ""  # file or entry point it came from (filled in by discovery)

    def flat_delta(self) -> dict[str, Any]:
        """The delta with nested mappings flattened to dotted keys."""
        return flatten(self.delta)


def _variants_in(module: ModuleType, source: str) -> list[Variant]:
    found = [v for v in vars(module).values() if isinstance(v, Variant)]
    return [_with_source(v, source) for v in found]


def _with_source(variant: Variant, source: str) -> Variant:
    return Variant(**{**variant.__dict__, "source": variant.source or source})


def _import(module_name: str, source: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except Exception as err:  # a broken variant file must name itself, whatever it raised
        frame = traceback.extract_tb(err.__traceback__)[-1]
        raise RegistryError(
            f"{source}: variant file failed to import: {type(err).__name__}: {err} (line {frame.lineno})"
        ) from None


def _from_package(package: str = "variants") -> list[Variant]:
    pkg = importlib.import_module(package)
    found: list[Variant] = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        source = f"{package}/{info.name}.py"
        found += _variants_in(_import(f"{package}.{info.name}", source), source)
    return found


def _from_entry_points() -> list[Variant]:
    found: list[Variant] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        source = f"entry point {ep.name} ({ep.value})"
        try:
            obj = ep.load()
        except Exception as err:
            raise RegistryError(f"{source}: failed to load: {type(err).__name__}: {err}") from None
        if isinstance(obj, ModuleType):
            found += _variants_in(obj, source)
        elif isinstance(obj, Variant):
            found.append(_with_source(obj, source))
        elif isinstance(obj, (list, tuple)) and all(isinstance(v, Variant) for v in obj):
            found += [_with_source(v, source) for v in obj]
        else:
            raise RegistryError(f"{source}: expected a Variant, a list of Variants or a module, got {type(obj)}")
    return found


def check_catalogue(variants: list[Variant]) -> dict[str, Variant]:
    """Index variants by name after checking names, baselines and delta keys."""
    by_name: dict[str, Variant] = {}
    for v in variants:
        if v.name in by_name:
            raise RegistryError(
                f"variant '{v.name}' is defined twice: in {by_name[v.name].source} and in {v.source}"
            )
        by_name[v.name] = v
    for v in variants:
        if v.baseline is not None and v.baseline not in by_name:
            raise RegistryError(
                f"{v.source}: variant '{v.name}' names unknown baseline '{v.baseline}'"
                f"{did_you_mean(v.baseline, by_name)}; known: {one_of(by_name)}"
            )
        check_layer(v.flat_delta(), f"{v.source}: variant '{v.name}' delta")
        for metric in [*v.paper_scores, *([v.mechanism] if v.mechanism else [])]:
            try:
                item_metric(metric)
            except ValueError as err:
                raise RegistryError(f"{v.source}: variant '{v.name}': {err}") from None
        _chain(v, by_name)  # detects cycles
    return by_name


def _chain(variant: Variant, by_name: dict[str, Variant]) -> list[Variant]:
    """The variant's ancestry from its root to itself."""
    chain = [variant]
    while chain[-1].baseline is not None:
        parent = by_name[chain[-1].baseline]
        if parent in chain:
            names = " -> ".join(v.name for v in chain + [parent])
            raise RegistryError(f"{variant.source}: baseline cycle: {names}")
        chain.append(parent)
    return chain[::-1]


@functools.cache
def catalogue() -> dict[str, Variant]:
    """All registered variants by name (discovered once per process)."""
    return check_catalogue(_from_package() + _from_entry_points())


def get_variant(name: str) -> Variant:
    """Look a variant up by name, failing with the known names and a suggestion."""
    variants = catalogue()
    if name not in variants:
        raise RegistryError(f"unknown variant '{name}'{did_you_mean(name, variants)}; known: {one_of(variants)}")
    return variants[name]


def lineage(name: str) -> list[Variant]:
    """The chain of variants from the root baseline down to `name`, whose deltas apply in that order."""
    return _chain(get_variant(name), catalogue())

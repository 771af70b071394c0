"""The component registries, declared once: what each kind is called, its plugin group, and its built-ins.

This module imports nothing heavy, so listing names (`ablate components list`, config validation) never imports
torch. Built-ins are `"module:attribute"` locations loaded on first use; a user's package adds entries through the
entry-point group of each kind, for example in its pyproject.toml:

```toml
[project.entry-points."ablate.connectors"]
avgpool = "my_package.connectors:avgpool"   # a factory (cfg, vision_dim, llm_dim) -> nn.Module
```

- connector (`ablate.connectors`): `(cfg: ConnectorConfig, vision_dim, llm_dim) -> nn.Module`, whose forward is
  `(x, mask) -> (tokens, mask)`;
- fusion (`ablate.fusions`): `(cfg: FusionConfig, llm) -> nn.Module`;
- adapter (`ablate.adapters`): `(cfg: AdapterConfig, llm) -> nn.ModuleList` of the modules it inserted;
- judge (`ablate.judges`): a class whose instances answer `judge(question, prediction, reference) -> bool`;
- benchmark split (`ablate.splits`): a `harness.evaluation.splits.Split` with its items (declared there, with the
  built-in splits, since a split is a light declaration rather than a factory).
"""

from __future__ import annotations

from harness.registry import Registry

CONNECTORS: Registry = Registry("connector", "ablate.connectors", {
    "resampler": "harness.model.connectors:resampler",
    "linear": "harness.model.connectors:linear",
    "mlp": "harness.model.connectors:mlp",
})
FUSIONS: Registry = Registry("fusion", "ablate.fusions", {
    "prefix": "harness.model.fusion:prefix",
    "cross_attn": "harness.model.fusion:cross_attn",
})
ADAPTERS: Registry = Registry("adapter", "ablate.adapters", {
    "bottleneck": "harness.model.adapters:bottleneck",
    "lora": "harness.model.adapters:lora",
    "none": "harness.model.adapters:none",
})
JUDGES: Registry = Registry("judge", "ablate.judges", {
    "rules": "harness.evaluation.judges:RuleJudge",
    "exact": "harness.evaluation.judges:ExactJudge",
})

# Which config key names a component of each registry (for validation and for the plugin tags of a run).
COMPONENT_KEYS = {
    "model.connector.kind": CONNECTORS,
    "model.fusion.kind": FUSIONS,
    "model.adapter.kind": ADAPTERS,
    "eval.judge.name": JUDGES,
}
REGISTRIES = {registry.kind: registry for registry in COMPONENT_KEYS.values()}


def registries() -> dict[str, Registry]:
    """Every registry by the config key that names its entries: the components, then the benchmark splits
    (`eval.splits`, a comma-separated list)."""
    from harness.evaluation.splits import SPLITS  # not at the top: harness.evaluation imports this module

    return {**COMPONENT_KEYS, "eval.splits": SPLITS}


def plugin_tags(flat_config: dict) -> dict[str, str]:
    """MLflow tags naming the package and version of every plugin entry a run's config uses."""
    tags = {}
    for key, registry in registries().items():
        value = flat_config.get(key)
        for name in str(value).split(",") if key == "eval.splits" and value else [value]:
            name = name.strip() if isinstance(name, str) else name
            if name in registry and registry.origin(name).kind == "plugin":
                origin = registry.origin(name)
                tags[f"ablate.plugin.{registry.kind}.{name}"] = (f"{origin.package} {origin.version} "
                                                                 f"({origin.location})")
    return tags

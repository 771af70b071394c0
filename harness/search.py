"""An experiment's `search:` block: which settings a sweep tunes, over which ranges, for which metric.

```yaml
search:
  metric: eval/openvqa_image/acc     # what a trial is scored on (default), maximized unless `direction: minimize`
  pruner: median                     # median | halving | none: stop poor trials early on their validation loss
  holdout_percent: 5                 # with a pruner: training samples held out for that loss (every trial alike)
  space:
    train.finetune.lr: {low: 1.0e-4, high: 1.0e-2, log: true}
    train.finetune.warmup_frac: {low: 0.0, high: 0.2}
    model.adapter.init_scale: {choices: [0.1, 1.0]}
```

Each key must be a config key (checked against the schema, so a typo fails before any trial), and each range is
checked here; `harness/sweep.py` runs the trials. Nothing here imports optuna or torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.config.validate import LEAVES, check_layer, leaf_type
from harness.errors import ConfigError, did_you_mean, one_of

PRUNERS = ("median", "halving", "none")
DIRECTIONS = ("maximize", "minimize")
SEARCH_KEYS = {"metric", "direction", "pruner", "holdout_percent", "space"}


@dataclass(frozen=True)
class Dimension:
    """One tuned setting: a float or integer range (optionally log-scaled), or a list of choices."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial) -> Any:
        """The value an Optuna trial picks for this setting."""
        if self.choices:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)


@dataclass(frozen=True)
class Search:
    """A validated `search:` block."""

    space: tuple[Dimension, ...]
    metric: str = "eval/openvqa_image/acc"
    direction: str = "maximize"
    pruner: str = "median"
    holdout_percent: float = 5.0  # with a pruner: share of training samples held out for its validation loss


def parse_search(raw: Any, source: str) -> Search:
    """Check a `search:` block and return it; every error names the file and the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: 'search' must be a mapping with a 'space' of config keys")
    for key in raw:
        if key not in SEARCH_KEYS:
            raise ConfigError(f"{source}: unknown search key '{key}'{did_you_mean(key, SEARCH_KEYS)}; known: "
                              f"{one_of(SEARCH_KEYS)}")
    space = raw.get("space")
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{source}: search.space must map config keys to ranges, e.g. "
                          "{train.finetune.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}")
    dims = tuple(_dimension(key, spec, f"{source}: search.space.{key}") for key, spec in space.items())
    metric = raw.get("metric", Search.metric)
    if not isinstance(metric, str) or not metric.startswith("eval/"):
        raise ConfigError(f"{source}: search.metric must name an evaluation metric such as 'eval/openvqa_image/acc', "
                          f"got {metric!r}")
    direction, pruner = raw.get("direction", Search.direction), raw.get("pruner", Search.pruner)
    if direction not in DIRECTIONS:
        raise ConfigError(f"{source}: search.direction must be one of {one_of(DIRECTIONS)}, got {direction!r}")
    if pruner not in PRUNERS:
        raise ConfigError(f"{source}: search.pruner must be one of {one_of(PRUNERS)}, got {pruner!r}"
                          f"{did_you_mean(str(pruner), PRUNERS)}")
    holdout = raw.get("holdout_percent", Search.holdout_percent)
    if isinstance(holdout, bool) or not isinstance(holdout, int | float) or not 0 < holdout <= 50:
        raise ConfigError(f"{source}: search.holdout_percent must be a percentage above 0 and at most 50 (the share "
                          f"of training samples the pruner's validation loss is measured on), got {holdout!r}")
    return Search(dims, metric, direction, pruner, float(holdout))


def _dimension(key: str, spec: Any, where: str) -> Dimension:
    if leaf_type(key) is None:
        raise ConfigError(f"{where}: unknown config key '{key}'{did_you_mean(key, LEAVES)}")
    if key.startswith("eval.") or key in ("variant", "scale", "seed"):
        raise ConfigError(f"{where}: a sweep tunes training settings; '{key}' is not one")
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected {{low: ..., high: ...}} or {{choices: [...]}}, got {spec!r}")
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: 'choices' must be a non-empty list and stand alone")
        for value in choices:
            check_layer({key: value}, where)  # each choice must be a valid value of the key
        return Dimension(key, choices=tuple(choices))
    unknown = set(spec) - {"low", "high", "log"}
    if unknown or not {"low", "high"} <= set(spec):
        raise ConfigError(f"{where}: a range is {{low: ..., high: ..., log: true|false}}, got {spec!r}")
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high))
    if not numbers or not low < high:
        raise ConfigError(f"{where}: low and high must be numbers with low < high, got {low!r} and {high!r}")
    if not isinstance(log, bool) or (log and low <= 0):
        raise ConfigError(f"{where}: log must be true or false, and a log range needs low > 0")
    if leaf_type(key) not in (int, float):
        raise ConfigError(f"{where}: a range needs a numeric setting; give '{key}' a list of choices instead")
    check_layer({key: low}, where)
    check_layer({key: high}, where)
    return Dimension(key, float(low), float(high), log, integer=leaf_type(key) is int)

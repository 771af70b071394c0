"""Read YAML files safely, turning every failure into one clear line that names the file.

Every YAML text a user hands us (experiment files, scale presets, paths files, `key=value` overrides) goes through
`load_yaml`. It composes the document first and refuses it, before building any Python object, when the text is
larger than `MAX_BYTES`, nests deeper than `MAX_DEPTH`, repeats a key in one mapping, or would expand past
`MAX_EXPANDED` nodes and characters through aliases (a "billion laughs" bomb). The expansion is measured on the
composed graph, where each alias is one shared node, so the check costs time linear in the text, not in what it
would expand to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError

MAX_BYTES = 1_000_000  # the largest experiment file in the project is about 2 kB
MAX_EXPANDED = 1_000_000  # nodes plus scalar characters once every alias is expanded
MAX_DEPTH = 64


class YamlRefused(ValueError):
    """A YAML text over the size, depth or alias-expansion budget, or one that repeats a key."""


def _expanded(node: yaml.Node, memo: dict[int, int], depth: int = 0) -> int:
    """Nodes plus scalar characters of `node` with every alias expanded; shared nodes are measured once."""
    if depth > MAX_DEPTH:
        raise YamlRefused(f"nested more than {MAX_DEPTH} levels deep")
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a recursive alias (a node inside itself) counts once instead of looping
    if isinstance(node, yaml.ScalarNode):
        size = 1 + len(node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded(child, memo, depth + 1) for child in node.value)
    else:
        _no_repeated_keys(node)
        size = 1 + sum(_expanded(k, memo, depth + 1) + _expanded(v, memo, depth + 1) for k, v in node.value)
    if size > MAX_EXPANDED:
        raise YamlRefused(f"expands to more than {MAX_EXPANDED:,} nodes and characters through aliases "
                              "(a YAML alias bomb?)")
    memo[id(node)] = size
    return size


def _no_repeated_keys(node: yaml.MappingNode) -> None:
    """PyYAML keeps the last of two equal keys silently; a repeated key is almost always a mistake, so say so."""
    seen: dict[str, yaml.Node] = {}
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode):
            if key.value in seen:
                raise YamlRefused(f"repeats the key '{key.value}' (lines {seen[key.value].start_mark.line + 1} and "
                                  f"{key.start_mark.line + 1}); keep one")
            seen[key.value] = key


def load_yaml(text: str) -> Any:
    """`yaml.safe_load` within the size, depth and alias budget; raises YamlRefused or yaml.YAMLError."""
    if len(text) > MAX_BYTES:
        raise YamlRefused(f"is {len(text):,} characters long; at most {MAX_BYTES:,} are read")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded(node, {})
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml(path: str | Path, what: str = "file") -> dict[str, Any]:
    """Load a YAML mapping with `load_yaml`; a missing or unreadable file, bad syntax, a text over the budget or a
    non-mapping is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        if path.stat().st_size > MAX_BYTES:
            raise YamlRefused(f"is {path.stat().st_size:,} bytes; at most {MAX_BYTES:,} are read")
        data = load_yaml(path.read_text())
    except YamlRefused as err:
        raise ConfigError(f"{path}: refused: the YAML {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{what} {path} cannot be read: {err}") from None
    except RecursionError:
        raise ConfigError(f"{path}: refused: the YAML nests too deeply") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}:{where}: malformed YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level, got {type(data).__name__}")
    return data


def parse_overrides(items: list[str], source: str = "command line") -> dict[str, Any]:
    """Parse CLI `key=value` items; values are read as YAML scalars (`3`, `true`, `null`, `1e-4`)."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{source}: override '{item}' must look like key=value, e.g. train.lr=1e-4")
        try:
            parsed[key.strip()] = load_yaml(raw) if raw.strip() else None
        except YamlRefused as err:
            raise ConfigError(f"{source}: override '{key.strip()}' refused: its YAML value {err}") from None
        except (yaml.YAMLError, RecursionError):
            parsed[key.strip()] = raw
    return parsed

"""Typed configuration, the bottom layer: `schema` (dataclasses), `files` (YAML), `validate` (per-layer checks).
It imports nothing else of the harness; `harness.resolve` merges presets, variants and experiments on top of it."""

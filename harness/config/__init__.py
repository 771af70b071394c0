"""Typed configuration: `schema` (dataclasses), `files` (YAML), `validate` (per-layer checks), `resolve` (merge,
consistency, hash)."""

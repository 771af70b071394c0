"""The registered variants: one module per controlled design choice (see harness/variant.py for the format)."""

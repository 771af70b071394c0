"""User-facing errors: one clear line, printed by the CLI with a non-zero exit.

Anything the user can fix (a bad config, an unknown name, a missing file) raises `AblateError` (or a subclass)
with a message that says what was wrong, where, and what would be right. Everything else is a bug: the CLI prints
it on one line too and shows its traceback with `--debug`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AblateError(Exception):
    """An error caused by user input; the CLI prints its message on one line and exits with status 2."""


class ConfigError(AblateError):
    """A configuration file, key or value is invalid."""


class Interrupted(AblateError):
    """The user pressed Ctrl-C; the message says what was kept and how to resume. The CLI exits with 130."""


class RegistryError(AblateError):
    """An unknown, duplicate or inconsistent registered name (variant, component, scale)."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def one_of(choices: Iterable[str]) -> str:
    """Format a sorted list of valid choices for an error message."""
    return ", ".join(f"'{c}'" for c in sorted(choices))

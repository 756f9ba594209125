"""The one exception family effkit raises for problems a user can fix.

The library raises these; only the CLI turns them into a one-line red message and an
exit code (2 for bad input). Every message names the bad value and, where there is a
finite set, the valid choices.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class EffkitError(Exception):
    """Base of every error effkit reports to users."""

    exit_code = 2


class UserInputError(EffkitError):
    """Bad input: an unknown name, a value out of range, a file that does not exist."""


class ModelRunError(EffkitError):
    """The model could not be built or run; the message names the layer and the op."""


class CoverageError(EffkitError):
    """`strict` tracing met ops that have no formula."""

    exit_code = 1


def choices_hint(value: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean: a, b?)' for close matches of `value`, else ''."""
    close = difflib.get_close_matches(value, list(choices), n=n, cutoff=0.6)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


def check_choice(what: str, value: str, choices: Iterable[str]) -> str:
    """Return `value` if it is one of `choices`, else raise naming both."""
    choices = list(choices)
    if value not in choices:
        raise UserInputError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
    return value


def check_positive(what: str, value: int) -> int:
    """Return `value` if it is > 0, else raise naming it."""
    if value <= 0:
        raise UserInputError(f"{what} must be a positive integer, got {value}")
    return value

"""Errors of ar-calib. Every message says what was received, what is allowed and what to do."""
from __future__ import annotations

from collections.abc import Iterable

from ar_schemes import ArError


class CalibError(ArError, ValueError):
    """A malformed dataset spec, a missing source, unreadable items or too little data."""


def choices_error(kind: str, value: object, choices: Iterable[object], hint: str = "") -> CalibError:
    """Build the standard 'unknown X' error listing the valid choices."""
    listed = ", ".join(str(c) for c in choices)
    msg = f"unknown {kind} {value!r}; valid choices: {listed}"
    return CalibError(msg + (f". {hint}" if hint else ""))

"""Errors of ar-schemes. Every message says what was received, what is allowed and what to do."""


class ArError(Exception):
    """Root of every error raised by the ar packages."""


class SchemeError(ArError, ValueError):
    """An invalid scheme, preset name, data type or layer configuration."""


def choices_error(kind: str, value: object, choices, hint: str = "") -> SchemeError:
    """Build the standard 'unknown X' error listing the valid choices."""
    listed = ", ".join(str(c) for c in choices)
    msg = f"unknown {kind} {value!r}; valid choices: {listed}"
    return SchemeError(msg + (f". {hint}" if hint else ""))

"""Errors of ar-eval. Every message says what was received, what is allowed and what to do."""
from __future__ import annotations

from collections.abc import Iterable

from ar_schemes import ArError


class EvalError(ArError, ValueError):
    """A bad evaluation request: unknown task, backend or text, or a model that cannot be loaded."""


class MissingDependencyError(ArError, ImportError):
    """An optional package (lm-eval, vLLM) is not installed."""


def choices_error(what: str, got: object, valid: Iterable[object], hint: str = "") -> EvalError:
    """``what=got`` is not one of ``valid``: an error listing the valid choices."""
    msg = f"unknown {what} {got!r}; valid choices: {', '.join(map(str, valid))}"
    return EvalError(msg + (f". {hint}" if hint else ""))


def missing(package: str, extra: str) -> MissingDependencyError:
    """The error for an optional package that is not installed, naming the extra to install."""
    return MissingDependencyError(f"{package} is not installed; install it with: pip install \"ar-eval[{extra}]\"")

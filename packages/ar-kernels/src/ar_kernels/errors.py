"""Errors of ar-kernels: each says what was received, what is allowed and how to fix it."""
from __future__ import annotations

from collections.abc import Iterable


class ArError(Exception):
    """Root of every ar error (ar-kernels cannot import ar-schemes, so it has its own root)."""


class BackendError(ArError, ValueError):
    """No backend can serve a layer, or the one asked for cannot."""


class MissingDependencyError(ArError, ImportError):
    """An optional package a backend needs is not installed."""


class CheckpointError(ArError, ValueError):
    """A checkpoint's files or quantization_config cannot be read as a supported layout."""


def choices_error(what: str, got: object, valid: Iterable[object], hint: str = "") -> BackendError:
    """``what=got`` is not one of ``valid``: an error listing the valid choices."""
    msg = f"unknown {what} {got!r}; valid choices: {', '.join(map(str, valid))}"
    return BackendError(msg + (f". {hint}" if hint else ""))


def missing(package: str, extra: str) -> MissingDependencyError:
    """The error for an optional package that is not installed, naming the extra to install."""
    return MissingDependencyError(
        f"{package} is not installed; install it with: pip install \"ar-kernels[{extra}]\"")

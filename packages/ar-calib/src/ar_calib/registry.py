"""Named datasets: ``@register_dataset("name")`` on one function makes ``name`` usable in a spec.

A loader takes the requested splits (a tuple, or None for its default) and returns an iterable
of items in any form ar-calib reads: a string, ``{"text": ...}``, ``{"messages": [...]}``,
``{"input_ids": [...]}``, a list of token ids or a 1-D tensor. A loader without parameters is
fine when the dataset has no splits.

>>> @register_dataset("my-notes", overwrite=True)
... def my_notes(splits=None):
...     return ["first note ...", "second note ..."]
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import CalibError, choices_error

Loader = Callable[..., Iterable[Any]]
F = TypeVar("F", bound=Loader)


@dataclass(frozen=True)
class RegisteredDataset:
    """A registry entry. ``stream``: one token stream cut into consecutive windows, in order
    (like a .txt file); ``hub``: loaded from the Hugging Face Hub, so reachability is probed first."""

    name: str
    loader: Loader
    stream: bool = False
    hub: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or any(c in self.name for c in ",:\"'"):
            raise CalibError(f"dataset name {self.name!r} must be non-empty and free of , : and quotes "
                             "(the spec grammar uses them)")
        if not callable(self.loader):
            raise CalibError(f"loader of dataset {self.name!r} must be callable, got {self.loader!r}")

    def load(self, splits: tuple[str, ...] | None) -> Iterable[Any]:
        """Call the loader, passing ``splits`` only when it takes a parameter."""
        if not _takes_args(self.loader):
            if splits is not None:
                raise CalibError(f"dataset {self.name!r} has no splits, but split={'+'.join(splits)} was given; "
                                 "drop the split= option")
            return self.loader()
        return self.loader(splits)


def _takes_args(fn: Loader) -> bool:
    try:
        return bool(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # builtins without a signature: assume it takes splits
        return True


_REGISTRY: dict[str, RegisteredDataset] = {}


def register_dataset(name: str, *, stream: bool = False, description: str = "", overwrite: bool = False,
                     hub: bool = False) -> Callable[[F], F]:
    """Decorator registering ``fn(splits) -> Iterable[item]`` as the dataset ``name``.

    Registering a taken name raises unless ``overwrite=True``, so two plugins cannot silently
    shadow each other.
    """
    def decorate(fn: F) -> F:
        if name in _REGISTRY and not overwrite:
            raise CalibError(f"dataset {name!r} is already registered (by {_REGISTRY[name].loader!r}); "
                             "pass overwrite=True to replace it")
        doc = description or (inspect.getdoc(fn) or "").split("\n")[0]
        _REGISTRY[name] = RegisteredDataset(name, fn, stream=stream, hub=hub, description=doc)
        return fn
    return decorate


def unregister_dataset(name: str) -> None:
    """Remove ``name`` (tests and plugins that clean up after themselves)."""
    _REGISTRY.pop(name, None)


def registered_datasets() -> tuple[str, ...]:
    """Names a spec may use, in registration order."""
    return tuple(_REGISTRY)


def is_registered(name: str) -> bool:
    return name in _REGISTRY


def get_registered(name: str) -> RegisteredDataset:
    """The entry of ``name``; an unknown name raises listing the registered ones."""
    if name not in _REGISTRY:
        raise choices_error("dataset", name, _REGISTRY,
                            "or give a path to a .txt, .json, .jsonl or .parquet file or a directory of them, "
                            "or register one with @ar_calib.register_dataset")
    return _REGISTRY[name]

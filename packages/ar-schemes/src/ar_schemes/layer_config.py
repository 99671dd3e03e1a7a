"""Which scheme each layer gets: exact names, then substrings, then regexes; ignore lists last.

A plain key matches as a dotted-path substring, so ``layers.1`` matches ``model.layers.1.mlp``
but never ``model.layers.10.mlp``. A key with regex characters is a regex searched in the name.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import SchemeError
from .presets import get_scheme
from .scheme import QuantScheme

_REGEX_CHARS = set("*+?[](){}|^$\\")

LayerConfig = Mapping[str, "str | dict[str, Any] | QuantScheme"]


def is_regex(key: str) -> bool:
    return any(c in _REGEX_CHARS for c in key)


def key_matches(key: str, name: str) -> bool:
    """True when a layer-config key selects the layer ``name``."""
    if key == name:
        return True
    if is_regex(key):
        try:
            return re.search(key, name) is not None
        except re.error as e:
            raise SchemeError(f"layer_config key {key!r} is not a valid regex: {e}") from e
    # dotted-path substring: the key must start and end on '.' boundaries
    return re.search(rf"(^|\.){re.escape(key)}($|\.)", name) is not None


def resolve_layer_schemes(layer_names: Iterable[str], default: QuantScheme,
                          layer_config: LayerConfig | None = None,
                          ignore: Iterable[str] = ()) -> dict[str, QuantScheme | None]:
    """Scheme per layer; None keeps the layer in 16 bits.

    Priority: exact key, then plain substring keys, then regex keys (in the order given).
    A layer-config value may be a preset name, a dict of overrides on the default, or a scheme.

    >>> from ar_schemes import get_scheme
    >>> s = resolve_layer_schemes(["m.layers.1.q", "m.layers.10.q"], get_scheme("W4A16"), {"layers.1": "W8A16"})
    >>> s["m.layers.1.q"].bits, s["m.layers.10.q"].bits
    (8, 4)
    """
    config = {k: _to_scheme(k, v, default) for k, v in (layer_config or {}).items()}
    ignore = list(ignore)
    plain = [k for k in config if not is_regex(k)]
    regex = [k for k in config if is_regex(k)]
    out: dict[str, QuantScheme | None] = {}
    for name in layer_names:
        scheme: QuantScheme | None = default
        if name in config:
            scheme = config[name]
        else:
            key = next((k for k in plain + regex if key_matches(k, name)), None)
            if key is not None:
                scheme = config[key]
        if any(key_matches(k, name) for k in ignore):
            scheme = None
        out[name] = scheme if scheme is not None and scheme.is_quantized else None
    return out


def _to_scheme(key: str, value: Any, default: QuantScheme) -> QuantScheme:
    if isinstance(value, (str, QuantScheme)):
        return get_scheme(value)
    if isinstance(value, dict):
        return get_scheme(value) if "scheme" in value else default.with_overrides(**value)
    raise SchemeError(f"layer_config[{key!r}] must be a scheme name, a dict of fields or a QuantScheme; "
                      f"got {type(value).__name__}")

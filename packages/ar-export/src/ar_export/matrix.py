"""Which format can carry which scheme: the table behind ``ar list formats``."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from ar_schemes import PRESETS, QuantScheme, get_scheme

from .base import FORMATS, Exporter


def format_matrix(schemes: Iterable[str] | Mapping[str, QuantScheme] | None = None,
                  formats: Iterable[str] | None = None) -> dict[str, dict[str, bool]]:
    """``{format: {scheme: can_export}}`` from each exporter's ``check``.

    ``schemes`` are preset names (default: every preset) or a name -> scheme mapping.

    >>> format_matrix(["W4A16", "W2A16"], ["auto_awq"])
    {'auto_awq': {'W4A16': True, 'W2A16': False}}
    """
    if schemes is None:
        named = dict(PRESETS)
    elif isinstance(schemes, Mapping):
        named = dict(schemes)
    else:
        named = {s: get_scheme(s) for s in schemes}
    out: dict[str, dict[str, bool]] = {}
    for fmt in formats or sorted(FORMATS):
        exporter = _exporter(fmt)
        out[fmt] = {name: exporter.check("model.layers.0.mlp.up_proj", s) is None for name, s in named.items()}
    return out


def format_reasons(scheme: str | QuantScheme, formats: Iterable[str] | None = None) -> dict[str, str | None]:
    """``{format: None or why not}`` for one scheme, for messages such as ``ar list formats W2A16``."""
    s = get_scheme(scheme)
    return {fmt: _exporter(fmt).check("model.layers.0.mlp.up_proj", s) for fmt in formats or sorted(FORMATS)}


def _exporter(fmt: str) -> Exporter:
    """The exporter of a bare format name with its defaults (``gguf`` without a type picks its own)."""
    from .base import get_exporter
    return FORMATS[fmt]() if fmt in FORMATS else get_exporter(fmt)

"""ar-export: write a quantized model in the formats the serving world loads."""
from .__about__ import __version__

# the registry and the interface
from .base import FORMATS, Exporter, atomic_dir, check_formats, get_exporter, parse_formats, register_format, save
from . import formats as _formats  # noqa: F401  (registers the built-in formats)

# what can carry what (``ar list formats``)
from .matrix import format_matrix, format_reasons

# errors
from .errors import ExportError

__all__ = [
    "__version__",
    "FORMATS", "Exporter", "register_format", "get_exporter", "parse_formats", "check_formats", "save",
    "atomic_dir", "format_matrix", "format_reasons",
    "ExportError",
]

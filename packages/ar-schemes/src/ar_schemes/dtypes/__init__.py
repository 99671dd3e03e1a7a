"""Data-type quantizers; importing this package registers the built-in ones."""
from . import int as _int  # noqa: F401  (registers "int")
from .base import (QuantResult, Quantizer, from_groups, get_quantizer, register_dtype, registered_dtypes,
                   round_ste, scale_shape, to_groups)

__all__ = ["QuantResult", "Quantizer", "from_groups", "get_quantizer", "register_dtype", "registered_dtypes",
           "round_ste", "scale_shape", "to_groups"]

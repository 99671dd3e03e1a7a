"""Data-type quantizers; importing this package registers the built-in ones (one module each)."""
from . import float as _float  # noqa: F401  (registers "float")
from . import fp8 as _fp8  # noqa: F401  (registers "fp")
from . import gguf as _gguf  # noqa: F401  (registers "int_dq", "int_ggml")
from . import int as _int  # noqa: F401  (registers "int")
from . import mx as _mx  # noqa: F401  (registers "mx_fp", "mx_fp_rceil")
from . import nv as _nv  # noqa: F401  (registers "nv_fp")
from .base import (
    Quantizer,
    QuantResult,
    from_groups,
    get_quantizer,
    register_dtype,
    registered_dtypes,
    round_ste,
    scale_shape,
    to_groups,
)

__all__ = ["QuantResult", "Quantizer", "from_groups", "get_quantizer", "register_dtype", "registered_dtypes",
           "round_ste", "scale_shape", "to_groups"]

"""ar-schemes: quantization schemes, data types and their quantize-dequantize math."""
from .__about__ import __version__

# schemes
from .scheme import QuantScheme, DATA_TYPES
from .presets import PRESETS, get_scheme, preset_names, scheme_name

# math
from .dtypes import (QuantResult, Quantizer, get_quantizer, register_dtype, registered_dtypes, scale_shape,
                     to_groups, from_groups, round_ste)

# GGUF: ggml block types, llama.cpp's per-tensor type mixes, importance-weighted scale search
from .dtypes.gguf import GGML_TYPES, ggml_scheme, ggml_type
from .gguf_rules import FILE_TYPES as GGUF_FILE_TYPES
from .gguf_rules import gguf_layer_schemes, gguf_tensor_type, layer_index, tensor_role
from .gguf_search import search_kquant_params

# layer selection and the hand-off record
from .layer_config import resolve_layer_schemes, key_matches
from .model import QuantizedLayer, QuantizedModel

# errors
from .errors import ArError, SchemeError


def qdq(w, scheme: QuantScheme, v=None, min_scale=None, max_scale=None):
    """Quantize then dequantize ``w`` (out, in) with ``scheme``; returns the dequantized tensor.

    >>> import torch
    >>> qdq(torch.randn(8, 128), get_scheme("W4A16")).shape
    torch.Size([8, 128])
    """
    return get_quantizer(scheme.data_type).quantize(w, scheme, v, min_scale, max_scale).dequant


def quantize(w, scheme: QuantScheme, v=None, min_scale=None, max_scale=None) -> QuantResult:
    """Quantize ``w`` (out, in): dequantized tensor plus codes, scales and zero points."""
    return get_quantizer(scheme.data_type).quantize(w, scheme, v, min_scale, max_scale)


__all__ = [
    "__version__",
    # schemes
    "QuantScheme", "DATA_TYPES", "PRESETS", "get_scheme", "preset_names", "scheme_name",
    # math
    "qdq", "quantize", "QuantResult", "Quantizer", "get_quantizer", "register_dtype", "registered_dtypes",
    "scale_shape", "to_groups", "from_groups", "round_ste",
    # gguf
    "GGML_TYPES", "GGUF_FILE_TYPES", "ggml_scheme", "ggml_type", "gguf_layer_schemes", "gguf_tensor_type",
    "layer_index", "tensor_role",
    "search_kquant_params",
    # layers
    "resolve_layer_schemes", "key_matches", "QuantizedLayer", "QuantizedModel",
    # errors
    "ArError", "SchemeError",
]

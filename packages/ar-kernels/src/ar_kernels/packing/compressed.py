"""compressed-tensors ``pack-quantized`` layout: int values densely packed into int32 words.

compressed-tensors quantizes to signed integers in [-2^(b-1), 2^(b-1) - 1] and packs them
shifted by 2^(b-1), i.e. as the unsigned codes ar already uses (sym: code = q + 2^(b-1)).
Values are a little-endian bit stream per row (32 values fill ``bits`` words, 3/5/6/7 bits
span words), truncated to ceil(n * bits / 32) words:

- ``weight_packed`` (out, ceil(in * bits / 32)) packs along ``in`` (``dim=1``);
- ``weight_zero_point`` (ceil(out * bits / 32), ngroups) packs along ``out`` (``dim=0``).
"""
from __future__ import annotations

from torch import Tensor

from .bitstream import pack_rows, unpack_rows


def pack_int(codes: Tensor, bits: int, dim: int = 1) -> Tensor:
    """Unsigned codes (2-D, in [0, 2^bits - 1]) -> int32 words packed along ``dim``."""
    if dim not in (0, 1):
        raise ValueError(f"dim={dim}: pack-quantized packs along dim 0 or 1")
    if dim == 0:
        return pack_rows(codes.t(), bits).t().contiguous()
    return pack_rows(codes, bits)


def unpack_int(packed: Tensor, bits: int, shape: tuple[int, int], dim: int = 1) -> Tensor:
    """Inverse of :func:`pack_int`: unsigned codes uint8 of ``shape``."""
    if dim not in (0, 1):
        raise ValueError(f"dim={dim}: pack-quantized packs along dim 0 or 1")
    if dim == 0:
        return unpack_rows(packed.t(), bits, shape[0]).t().contiguous()
    return unpack_rows(packed, bits, shape[1])

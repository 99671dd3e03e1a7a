"""Integer quantization: asymmetric (min/max with zero point) and symmetric "full range".

Symmetric full range uses all 2^b codes: the end of the group with the larger magnitude maps
to -2^(b-1), so the scale is negative when that end is the positive maximum.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import SchemeError
from ..scheme import QuantScheme
from .base import (
    Quantizer,
    QuantResult,
    expand_groups,
    fp16_ste,
    from_groups,
    group_range,
    register_dtype,
    round_ste,
    to_groups,
)

MIN_SCALE = 1e-5


def int_params(wg: Tensor, bits: int, sym: bool, min_scale: Tensor | None, max_scale: Tensor | None
               ) -> tuple[Tensor, Tensor]:
    """Per-group (scale, zero) of grouped weights (G0, G1, n); both (G0, G1), fp32."""
    wmin, wmax = group_range(wg, min_scale, max_scale)
    if sym:
        half = 2 ** (bits - 1)
        use_min = wmin.abs() >= wmax.abs()
        scale = torch.where(use_min, -wmin, -wmax) / half
        sign = torch.where(scale < 0, -1.0, 1.0)
        scale = sign * scale.abs().clamp(min=MIN_SCALE)
        zero = torch.full_like(scale, float(half))
    else:
        scale = ((wmax - wmin) / (2**bits - 1)).clamp(min=MIN_SCALE)
        scale = fp16_ste(scale)
        zero = round_ste(-wmin / scale).clamp(0, 2**bits - 1)
    return fp16_ste(scale), zero


def int_codes(wg: Tensor, scale: Tensor, zero: Tensor, bits: int, vg: Tensor | None) -> Tensor:
    """Unsigned codes in [0, 2^bits - 1] with straight-through rounding. (G0, G1, n)."""
    x = wg / scale.unsqueeze(-1)
    if vg is not None:
        x = x + vg
    return (round_ste(x) + zero.unsqueeze(-1)).clamp(0, 2**bits - 1)


@register_dtype("int")
class IntQuantizer(Quantizer):
    """Plain integer codes with one fp16 scale (and zero point) per group."""

    def quantize(self, w: Tensor, scheme: QuantScheme, v: Tensor | None = None,
                 min_scale: Tensor | None = None, max_scale: Tensor | None = None) -> QuantResult:
        g = scheme.group_size
        wg = to_groups(w.float(), g)
        scale, zero = int_params(wg, scheme.bits, scheme.sym, min_scale, max_scale)
        q = int_codes(wg, scale, zero, scheme.bits, None if v is None else to_groups(v, g))
        dq = (q - zero.unsqueeze(-1)) * scale.unsqueeze(-1)
        shape = tuple(w.shape)
        return QuantResult(dequant=from_groups(dq, shape, g), codes=from_groups(q, shape, g),
                           scale=scale, zero=zero)

    def dequantize(self, codes: Tensor, scale: Tensor, zero: Tensor | None, scheme: QuantScheme,
                   global_scale: Tensor | None = None, extra: dict[str, Tensor] | None = None) -> Tensor:
        shape = tuple(codes.shape)
        if zero is None:
            raise SchemeError("int codes need their zero points to dequantize (zero=None was given); "
                              "pass QuantResult.zero / QuantizedLayer.zero")
        s = expand_groups(scale.float(), shape, scheme.group_size)
        z = expand_groups(zero.float(), shape, scheme.group_size)
        return (codes.float() - z) * s

"""OCP Microscaling (MX) formats: MXFP4 (E2M1 elements) and MXFP8 (E4M3 elements).

Each group of 32 input channels shares one power-of-two scale stored as E8M0 (exponent + 127).
``mx_fp`` follows the OCP MX v1.0 conversion: exponent ``floor(log2(amax)) - emax_elem``, so the
group maximum lands in [2^emax, 2^(emax+1)) and elements above the format's max saturate
(E2M1: values in (6, 8) clip to 6). ``mx_fp_rceil`` rounds the scale up instead,
``ceil(log2(amax / max_elem))``, so that nothing clips, at the cost of a coarser grid.

Gradients: the power of two is straight-through: its value is exact, its gradient that of the
unrounded scale ``amax / 2^emax`` (RCEIL: ``amax / max_elem``) times their ratio (in [1/2, 1]),
so min_scale / max_scale receive gradients as they do for int.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import SchemeError
from ..scheme import QuantScheme
from .base import Quantizer, QuantResult, expand_groups, from_groups, register_dtype, to_groups
from .minifloat import (
    E2M1,
    E4M3,
    FloatFormat,
    e2m1_decode,
    e2m1_encode,
    e4m3_encode,
    floor_log2,
    group_amax,
    quantize_elements,
)

E8M0_BIAS = 127
_ELEMENTS = {4: E2M1, 8: E4M3}
_TINY = 2.0**-100  # below it a group's scale gets no gradient (an all-zero or fully clipped group)


def element_format(bits: int) -> FloatFormat:
    """E2M1 for 4 bits, E4M3 for 8 bits."""
    if bits not in _ELEMENTS:
        raise SchemeError(f"MX elements have bits {sorted(_ELEMENTS)}, got bits={bits}")
    return _ELEMENTS[bits]


def mx_exponent(amax: Tensor, fmt: FloatFormat, rceil: bool) -> Tensor:
    """Exact shared exponent per group (int32, in [-127, 127]); an all-zero group gets -127."""
    e = floor_log2(amax) - fmt.emax
    if rceil:
        # ceil(log2(amax / max)) is e or e + 1: e suffices iff amax <= max * 2^e (exact compare)
        e = e + (amax > torch.ldexp(torch.full_like(amax, fmt.max), e)).to(e.dtype)
    e = torch.where(amax > 0, e, torch.full_like(e, -E8M0_BIAS))
    return e.clamp(-E8M0_BIAS, E8M0_BIAS)


def mx_scale(amax: Tensor, fmt: FloatFormat, rceil: bool) -> tuple[Tensor, Tensor]:
    """(scale fp32 power of two with a straight-through gradient, exponent int32) per group."""
    e = mx_exponent(amax.detach(), fmt, rceil)
    exact = torch.ldexp(torch.ones_like(amax), e)
    smooth = amax.clamp(min=_TINY) / (fmt.max if rceil else 2.0**fmt.emax)  # within 2x of exact
    # multiplicative straight-through: smooth / smooth.detach() is exactly 1, so the value stays
    # the exact power of two even where the exponent clamps (an additive STE would round it away)
    return exact * (smooth / smooth.detach()), e


@register_dtype("mx_fp", "mx_fp_rceil")
class MXQuantizer(Quantizer):
    """MXFP4 / MXFP8 with floor (OCP) or ceil (RCEIL) shared exponents."""

    def quantize(self, w: Tensor, scheme: QuantScheme, v: Tensor | None = None,
                 min_scale: Tensor | None = None, max_scale: Tensor | None = None) -> QuantResult:
        fmt, g, shape = element_format(scheme.bits), scheme.group_size, tuple(w.shape)
        wg = to_groups(w.float(), g)  # (G0, G1, 32)
        scale, e = mx_scale(group_amax(wg, min_scale, max_scale), fmt, scheme.data_type == "mx_fp_rceil")
        s = scale.unsqueeze(-1)
        # values past twice the element max saturate anyway; clamping them first keeps x and the
        # backward of w / s (x / s) finite when a clip multiplier drives the scale towards 2^-127
        lim = 2 * fmt.max * s.detach()
        x = torch.minimum(torch.maximum(wg, -lim), lim) / s
        q = quantize_elements(x, fmt, None if v is None else to_groups(v.float(), g))
        dq = q * s
        codes = e2m1_encode(q) if fmt is E2M1 else e4m3_encode(q)
        return QuantResult(dequant=from_groups(dq, shape, g), codes=from_groups(codes, shape, g),
                           scale=scale, extra={"scale_e8m0": (e + E8M0_BIAS).to(torch.uint8)})

    def dequantize(self, codes: Tensor, scale: Tensor, zero: Tensor | None, scheme: QuantScheme,
                   global_scale: Tensor | None = None, extra: dict[str, Tensor] | None = None) -> Tensor:
        """Elements times the group's power of two (from ``extra["scale_e8m0"]`` when given)."""
        shape = tuple(codes.shape)
        elements = e2m1_decode(codes) if element_format(scheme.bits) is E2M1 else codes.float()
        if extra and "scale_e8m0" in extra:
            e = extra["scale_e8m0"].to(torch.int32) - E8M0_BIAS
            scale = torch.ldexp(torch.ones(e.shape, device=e.device), e)
        return elements * expand_groups(scale.float(), shape, scheme.group_size)

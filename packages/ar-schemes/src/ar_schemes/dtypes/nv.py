"""NVFP4: E2M1 elements in groups of 16, FP8 (E4M3) group scales and one fp32 global scale.

Two-level scaling keeps the group scales inside E4M3's range: the tensor's absolute maximum is
mapped to the largest product of the two formats by ``global_scale = 448 * 6 / amax(tensor)``;
each group's scale ``amax_group / 6 * global_scale`` is rounded to E4M3 and the element
multiplier is ``scale_e4m3 / global_scale``. Because the E4M3 rounding may round a scale down,
the largest element of a group can exceed 6 slightly and saturates.

``global_scale`` comes from the unclipped tensor (it is a storage range, not a tuned value);
min_scale / max_scale act on the group scales, with a straight-through E4M3 rounding.
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
    div_exact,
    e2m1_decode,
    e2m1_encode,
    e4m3_encode,
    group_amax,
    quantize_elements,
    round_to_format,
)

GLOBAL_RANGE = E4M3.max * E2M1.max  # 448 * 6


def nv_global_scale(w: Tensor) -> Tensor:
    """``448 * 6 / amax(w)`` as a (1,) fp32 tensor; 1.0 for an all-zero tensor."""
    amax = w.detach().abs().amax().float().reshape(1)
    safe = torch.where(amax > 0, amax, torch.ones_like(amax))
    return torch.where(amax > 0, torch.full_like(amax, GLOBAL_RANGE) / safe, torch.ones_like(amax))


def nv_group_scales(amax: Tensor, global_scale: Tensor) -> tuple[Tensor, Tensor]:
    """(group scales on the E4M3 grid, effective fp32 multipliers), both (G0, G1)."""
    s8 = round_to_format(div_exact(amax, E2M1.max) * global_scale, E4M3)
    return s8, s8 / global_scale


@register_dtype("nv_fp")
class NVFP4Quantizer(Quantizer):
    """NVFP4 weights; codes are E2M1 ``sign << 3 | index``."""

    def quantize(self, w: Tensor, scheme: QuantScheme, v: Tensor | None = None,
                 min_scale: Tensor | None = None, max_scale: Tensor | None = None) -> QuantResult:
        _check(scheme)
        g, shape = scheme.group_size, tuple(w.shape)
        wg = to_groups(w.float(), g)  # (G0, G1, 16)
        global_scale = nv_global_scale(w)
        s8, scale = nv_group_scales(group_amax(wg, min_scale, max_scale), global_scale)
        s = scale.unsqueeze(-1)
        # a group whose scale underflows E4M3 dequantizes to 0 whatever its codes: make them 0
        x = torch.where(s > 0, wg / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(wg))
        q = quantize_elements(x, E2M1, None if v is None else to_groups(v.float(), g))
        codes = e2m1_encode(q)
        return QuantResult(dequant=from_groups(q * s, shape, g), codes=from_groups(codes, shape, g),
                           scale=scale, global_scale=global_scale, extra={"scale_e4m3": e4m3_encode(s8)})

    def dequantize(self, codes: Tensor, scale: Tensor, zero: Tensor | None, scheme: QuantScheme,
                   global_scale: Tensor | None = None, extra: dict[str, Tensor] | None = None) -> Tensor:
        """``fp4 * (scale_e4m3 / global_scale)``, the multiplier computed first as quantize does,
        so both give the same bits; falls back to ``scale`` without the E4M3 scales."""
        if extra and "scale_e4m3" in extra and global_scale is not None:
            scale = extra["scale_e4m3"].float() / global_scale.float()
        return e2m1_decode(codes) * expand_groups(scale.float(), tuple(codes.shape), scheme.group_size)


def _check(scheme: QuantScheme) -> None:
    if scheme.bits != 4 or not isinstance(scheme.group_size, int) or scheme.group_size <= 0:
        raise SchemeError(f"nv_fp needs bits=4 and a positive group size (16 for NVFP4); got bits={scheme.bits}, "
                          f"group_size={scheme.group_size!r}")

"""FP8 (E4M3) weights with an fp32 scale per tensor, per channel, per group or per 2-D block.

``scale = amax / 448`` maps each group's (clipped) absolute maximum onto E4M3's largest value;
codes are the ``torch.float8_e4m3fn`` values and ``dequant = codes * scale``. group_size 0 is
FPW8A16 (per tensor), -1 is FP8_STATIC (per output channel), (128, 128) is FP8_BLOCK.
"""
from __future__ import annotations

from torch import Tensor

from ..scheme import QuantScheme
from .base import Quantizer, QuantResult, expand_groups, from_groups, register_dtype, to_groups
from .minifloat import E4M3, div_exact, e4m3_encode, group_amax, quantize_elements

MIN_SCALE = 1e-12  # an all-zero group still gets a finite, positive scale


@register_dtype("fp")
class FP8Quantizer(Quantizer):
    """FP8 E4M3 with one fp32 scale per group (the scale is not rounded: it is stored in fp32)."""

    def quantize(self, w: Tensor, scheme: QuantScheme, v: Tensor | None = None,
                 min_scale: Tensor | None = None, max_scale: Tensor | None = None) -> QuantResult:
        g, shape = scheme.group_size, tuple(w.shape)
        wg = to_groups(w.float(), g)  # (G0, G1, n)
        scale = div_exact(group_amax(wg, min_scale, max_scale), E4M3.max).clamp(min=MIN_SCALE)
        q = quantize_elements(wg / scale.unsqueeze(-1), E4M3, None if v is None else to_groups(v.float(), g))
        dq = q * scale.unsqueeze(-1)
        return QuantResult(dequant=from_groups(dq, shape, g), codes=from_groups(e4m3_encode(q), shape, g),
                           scale=scale)

    def dequantize(self, codes: Tensor, scale: Tensor, zero: Tensor | None, scheme: QuantScheme,
                   global_scale: Tensor | None = None, extra: dict[str, Tensor] | None = None) -> Tensor:
        return codes.float() * expand_groups(scale.float(), tuple(codes.shape), scheme.group_size)

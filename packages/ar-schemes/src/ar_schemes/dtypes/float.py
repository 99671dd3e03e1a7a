"""The ``float`` data type: weights kept as they are (BF16 / W16A16 presets).

Registered so that ``qdq`` and ``quantize`` accept every preset; ar-core keeps such layers in
the model dtype and never hands them to an exporter as quantized.
"""
from __future__ import annotations

from torch import Tensor

from ..scheme import QuantScheme
from .base import Quantizer, QuantResult, register_dtype


@register_dtype("float")
class FloatQuantizer(Quantizer):
    """Identity: ``dequant`` and ``codes`` are the weight in fp32, ``scale`` is 1."""

    def quantize(self, w: Tensor, scheme: QuantScheme, v: Tensor | None = None,
                 min_scale: Tensor | None = None, max_scale: Tensor | None = None) -> QuantResult:
        w = w.float()
        return QuantResult(dequant=w, codes=w.detach(), scale=w.new_ones(1, 1))

    def dequantize(self, codes: Tensor, scale: Tensor, zero: Tensor | None, scheme: QuantScheme,
                   global_scale: Tensor | None = None, extra: dict[str, Tensor] | None = None) -> Tensor:
        return codes.float()

"""The ``torch`` backend: dequantize then matmul. The reference every other backend is tested against.

Runs anywhere torch runs (CPU, CUDA, XPU) for 2-8 bit integer layers of any group size and any
layout. It materialises the layer's weight for each call, so it is slow but exact: the weight it
multiplies is bit for bit the fake-quantized model's (``(q - zero) * scale`` in fp32, cast once).
"""
from __future__ import annotations

from torch import Tensor
from torch.nn import functional as F

from ..registry import BackendSpec, register_backend
from .base import IntQuantLinear


@register_backend(BackendSpec(
    name="torch:int", devices=("cpu", "cuda", "xpu", "hpu"), bits=(2, 3, 4, 5, 6, 7, 8),
    packings=("gptq", "auto_round", "awq"), priority=0))
class TorchIntLinear(IntQuantLinear):
    """Integer QuantLinear computing ``F.linear(x, dequantize(W))``.

    ``cache_weight=True`` keeps the dequantized weight (fast, but full-precision memory).
    """

    cache_weight = False

    def forward(self, x: Tensor) -> Tensor:
        w = getattr(self, "_w", None)
        if w is None or w.dtype != x.dtype:
            w = self.dequantize(x.dtype)
            if self.cache_weight:
                self._w = w
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, w, bias)


def dequant_matmul(x: Tensor, layer: IntQuantLinear) -> Tensor:
    """Reference product of ``x`` (.., in) with a packed layer, whichever backend class it is."""
    w = IntQuantLinear.dequantize(layer, x.dtype)
    return F.linear(x, w, None if layer.bias is None else layer.bias.to(x.dtype))


__all__ = ["TorchIntLinear", "dequant_matmul"]

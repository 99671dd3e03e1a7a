"""The float element formats: FP8 (e4m3), MXFP4 / MXFP8 (E8M0 group scales) and NVFP4, emulated.

No native FP4/FP8 GEMM is assumed: the weight is decoded to the activation dtype and multiplied
with ``F.linear``. That is exact with respect to the stored codes (the product is the fake-quant
model's), portable to every device, and what a native kernel is tested against. Activations stay
16-bit in emulation (``act_bits`` < 16 layers are served weight-only).

Checkpoint buffers (the reference's names):
  fp8:    weight e4m3 (out, in), weight_scale fp32 (per tensor, channel, group or 2-D block)
  mx_fp4: weight_packed uint8 (out, in/2) E2M1 low nibble first, weight_scale uint8 E8M0 (out, in/32)
  mx_fp8: weight e4m3 (out, in), weight_scale uint8 E8M0 (out, in/32)
  nv_fp4: weight_packed, weight_scale e4m3 (out, in/16), weight_global_scale fp32 (1,);
          dq = fp4 * weight_scale / weight_global_scale
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from ..registry import BackendSpec, LayerDesc, register_backend
from .base import FloatQuantLinear

E8M0_BIAS = 127


def scale_grid(desc: LayerDesc) -> tuple[int, int]:
    """Shape of the scale tensor of a float layer."""
    o, i = desc.out_features, desc.in_features
    if desc.block_size is not None:
        r, c = desc.block_size
        return (-(-o // r), -(-i // c))
    if desc.group_size == 0:
        return (1, 1)
    return (o, desc.ngroups)


def expand(scale: Tensor, shape: tuple[int, int]) -> Tensor:
    """Broadcast a (G0, G1) grid of scales over a weight of ``shape`` (blocks cropped at the edge)."""
    g0, g1 = scale.reshape(-1, scale.shape[-1]).shape if scale.dim() > 1 else (1, scale.numel())
    s = scale.reshape(g0, g1)
    r, c = -(-shape[0] // g0), -(-shape[1] // g1)
    return s.repeat_interleave(r, 0).repeat_interleave(c, 1)[: shape[0], : shape[1]]


@register_backend(BackendSpec(
    name="torch:float", devices=("cpu", "cuda", "xpu", "hpu"), bits=(4, 8), data_types=("fp", "mx_fp", "nv_fp"),
    packings=("fp8", "mx_fp4", "mx_fp8", "nv_fp4"), priority=0, act_quant=True))
class TorchFloatLinear(FloatQuantLinear):
    """FP8 / MXFP4 / MXFP8 / NVFP4 QuantLinear that decodes the weight and calls ``F.linear``."""

    def __init__(self, desc: LayerDesc, bias: bool = False, device: Any = None) -> None:
        super().__init__(desc, bias, device)
        o, i, p = desc.out_features, desc.in_features, desc.packing
        if p in ("mx_fp4", "nv_fp4"):
            self.register_buffer("weight_packed", torch.zeros(o, i // 2, dtype=torch.uint8, device=device))
        else:
            self.register_buffer("weight", torch.zeros(o, i, dtype=torch.float8_e4m3fn, device=device))
        sdt = {"fp8": torch.float32, "nv_fp4": torch.float8_e4m3fn}.get(p, torch.uint8)
        self.register_buffer("weight_scale", torch.zeros(scale_grid(desc), dtype=sdt, device=device))
        if p == "nv_fp4":
            self.register_buffer("weight_global_scale", torch.ones(1, dtype=torch.float32, device=device))
            self.register_buffer("input_global_scale", torch.ones(1, dtype=torch.float32, device=device))
        if p == "fp8" and desc.act_bits < 16:
            self.register_buffer("input_scale", torch.ones(1, dtype=torch.float32, device=device))

    def elements(self) -> Tensor:
        """The element values (out, in) in fp32, before scaling."""
        if self.desc.packing in ("mx_fp4", "nv_fp4"):
            from ..packing.fp4 import fp4_to_float, unpack_fp4
            return fp4_to_float(unpack_fp4(self.weight_packed.cpu())).to(self.weight_packed.device)
        return self.weight.float()

    def multipliers(self) -> Tensor:
        """The per-group fp32 multipliers, on the scale grid."""
        p, s = self.desc.packing, self.weight_scale
        if p in ("mx_fp4", "mx_fp8"):
            return torch.ldexp(torch.ones(s.shape, device=s.device), s.to(torch.int32) - E8M0_BIAS)
        if p == "nv_fp4":
            return s.float() / self.weight_global_scale.float()
        return s.float()

    def dequantize(self, dtype: torch.dtype | None = None) -> Tensor:
        """The weight (out, in): elements times their group multiplier in fp32, cast to ``dtype``."""
        shape = (self.out_features, self.in_features)
        w = self.elements() * expand(self.multipliers(), shape)
        return w.to(dtype or self.desc.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.dequantize(x.dtype), None if self.bias is None else self.bias.to(x.dtype))


__all__ = ["TorchFloatLinear", "expand", "scale_grid"]

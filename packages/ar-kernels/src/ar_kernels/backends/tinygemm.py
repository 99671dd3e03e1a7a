"""The ``tinygemm`` backend: 4-bit layers through PyTorch's own int4 kernel (``aten._weight_int4pack_mm``).

PyTorch ships tinygemm, a CUDA int4 x bf16 GEMM (sm_80+): ``post_init`` repacks the codes with
``aten._convert_weight_to_int4pack`` and folds each group's zero point into tinygemm's float
offset, since it computes ``w = (q - 8) * scale + offset``: ``offset = (8 - zero) * scale``.

It needs nothing beyond torch, but it is not bit-faithful: tinygemm holds scales and offsets in
bf16, so a fp16 checkpoint scale loses 3 of its 11 significant bits and each weight is off the
torch backend's by up to 2^-8 relative (~2.4e-3 relative output error). So ``auto`` never picks it
(priority below the torch backend's): ask for it with ``backend="tinygemm"``. The ``cuda`` and
``triton`` backends match the torch backend to ~1e-4. On CPU tensors (tests) it
runs the CPU twin, ``aten._weight_int4pack_mm_for_cpu``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..registry import BackendSpec, LayerDesc, register_backend
from .base import IntQuantLinear, no_act_order
from .convert import unpack_words

INNER_K_TILES = 8  # tinygemm's K tiling: K must be a multiple of 16 * INNER_K_TILES


def _shape_check(desc: LayerDesc) -> str | None:
    if desc.in_features % (16 * INNER_K_TILES) or desc.out_features % 8:
        return (f"in_features={desc.in_features} must be a multiple of {16 * INNER_K_TILES} and "
                f"out_features={desc.out_features} of 8")
    return None


@register_backend(BackendSpec(
    name="tinygemm:int", devices=("cuda",), bits=(4,), packings=("gptq", "auto_round", "awq"),
    group_sizes=(32, 64, 128, 256), dtypes=(torch.bfloat16,), priority=-10,
    checks=(_shape_check, no_act_order)))
class TinygemmIntLinear(IntQuantLinear):
    """4-bit QuantLinear running ``aten._weight_int4pack_mm`` (bf16 activations)."""

    def post_init(self) -> None:
        if self.packed:
            return
        super().post_init()
        if self.g_idx is not None:
            raise RuntimeError("tinygemm backend: this layer reorders groups (g_idx); use backend='torch'")
        d = self.desc
        codes = unpack_words(self.qweight, 4, d.in_features).t().contiguous()  # (out, in) int32
        if codes.is_cuda:  # two codes a byte, even input channel in the high nibble
            u8 = (codes[:, ::2] << 4 | codes[:, 1::2]).to(torch.uint8)
            self.qweight = torch.ops.aten._convert_weight_to_int4pack(u8, INNER_K_TILES)
        else:
            self.qweight = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, INNER_K_TILES)
        s = self.scales.float()
        sz = torch.stack([s, (8 - self.zeros.float()) * s], dim=-1)  # (ngroups, out, 2)
        self.register_buffer("scale_offset", sz.to(torch.bfloat16).contiguous())
        del self.scales, self.zeros

    def forward(self, x: Tensor) -> Tensor:
        d = self.desc
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(torch.bfloat16)
        mm = torch.ops.aten._weight_int4pack_mm if x2.is_cuda else torch.ops.aten._weight_int4pack_mm_for_cpu
        out = mm(x2.contiguous(), self.qweight, d.group, self.scale_offset)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.to(x.dtype).reshape(*shape[:-1], d.out_features)

    def dequantize(self, dtype: torch.dtype | None = None) -> Tensor:
        """The weight (out, in) tinygemm multiplies: the product with the identity (exact)."""
        d = self.desc
        eye = torch.eye(d.in_features, dtype=torch.bfloat16, device=self.qweight.device)
        mm = torch.ops.aten._weight_int4pack_mm if eye.is_cuda else torch.ops.aten._weight_int4pack_mm_for_cpu
        return mm(eye, self.qweight, d.group, self.scale_offset).t().to(dtype or d.dtype).contiguous()


__all__ = ["TinygemmIntLinear"]

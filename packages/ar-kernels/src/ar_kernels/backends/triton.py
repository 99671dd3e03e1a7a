"""The ``triton`` backend: 2/4/8-bit integer layers on CUDA and XPU.

Prefill runs a GEMM that dequantizes each weight tile in registers before ``tl.dot``; decode
(a few rows) runs a split-K GEMV that spreads the K dimension over many programs so a single
token's product uses the whole GPU's memory bandwidth. Very large batches may dequantize the
weight once and call cuBLAS instead (``dequant_min_rows``), which wins when the product is
compute bound. Triton is imported on the first forward, never by ``import ar_kernels``.
"""
from __future__ import annotations

import importlib
from types import ModuleType

import torch
from torch import Tensor

from ..errors import missing
from ..registry import BackendSpec, LayerDesc, register_backend
from .base import IntQuantLinear, no_act_order


def _shape_check(desc: LayerDesc) -> str | None:
    if desc.in_features % 32:
        return f"in_features={desc.in_features} is not a multiple of 32"
    if desc.group_size != -1 and desc.group_size % 32:
        return f"group_size={desc.group_size} is not a multiple of 32"
    return None


def kernels() -> ModuleType:
    """The kernel module, imported on first use with an install hint when triton is missing."""
    try:
        return importlib.import_module("ar_kernels.backends._triton_kernels")
    except ImportError as exc:
        if exc.name == "triton":
            raise missing("triton", "triton") from exc
        raise


@register_backend(BackendSpec(
    name="triton:int", devices=("cuda", "xpu"), bits=(2, 4, 8), packings=("gptq", "auto_round", "awq"),
    dtypes=(torch.float16, torch.bfloat16), priority=50,
    requirements=("triton",), extra="triton", checks=(_shape_check, no_act_order), cpu_interpret=True))
class TritonIntLinear(IntQuantLinear):
    """Integer QuantLinear with Triton kernels. Rows <= ``gemv_max_rows`` take the split-K GEMV.

    Thresholds measured on an H100 (benchmarks/NOTES.md) for a 4096 x 14336 W4 g128 layer."""

    gemv_max_rows = 1
    fast_gemv = False  # True: scale applied per group (faster, ~1e-3 from the torch backend in bf16)
    dequant_min_rows: int | None = 512  # from this many rows on: dequantize once + cuBLAS (None: never)

    def post_init(self) -> None:
        super().post_init()
        if self.g_idx is not None:
            raise RuntimeError("triton backend: this layer reorders groups (g_idx); use backend='torch'")
        self.scales = self.scales.contiguous()
        self.zeros = self.zeros.contiguous()

    def forward(self, x: Tensor) -> Tensor:
        k = kernels()
        d = self.desc
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if x2.stride(-1) != 1:
            x2 = x2.contiguous()
        rows = x2.shape[0]
        bias = None if self.bias is None else self.bias.to(x.dtype)
        if rows <= self.gemv_max_rows:
            out = k.int_gemv(x2, self.qweight, self.scales, self.zeros, d.bits, d.group, d.out_features,
                             fast=self.fast_gemv)
            out = out.to(x.dtype) if bias is None else (out + bias.float()).to(x.dtype)
        elif self.dequant_min_rows is not None and rows >= self.dequant_min_rows:
            w = k.int_dequant(self.qweight, self.scales, self.zeros, d.bits, d.group, d.in_features,
                              d.out_features, x.dtype)
            out = torch.addmm(bias, x2, w) if bias is not None else x2 @ w
        else:
            out = k.int_gemm(x2, self.qweight, self.scales, self.zeros, bias, d.bits, d.group, d.out_features)
        return out.reshape(*shape[:-1], d.out_features)


__all__ = ["TritonIntLinear", "kernels"]

"""The ``ipex`` backend: 4-bit GPTQ / AWQ layers through intel-extension-for-pytorch (CPU, XPU).

IPEX ships weight-only-quantized GEMMs for Intel CPUs (AMX / AVX-512) and GPUs that read the
GPTQ and AWQ layouts directly, so ``post_init`` hands it the checkpoint buffers unchanged.
IPEX is imported in ``post_init`` only.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import missing
from ..registry import BackendSpec, LayerDesc, register_backend
from .base import IntQuantLinear


def _shape_check(desc: LayerDesc) -> str | None:
    if desc.out_features % 8 or desc.in_features % 32:
        return f"out_features={desc.out_features} (x8) and in_features={desc.in_features} (x32) must align"
    return None


@register_backend(BackendSpec(
    name="ipex:int", devices=("cpu", "xpu"), bits=(4,), packings=("gptq", "awq"), priority=40,
    dtypes=(torch.float16, torch.bfloat16, torch.float32), requirements=("intel_extension_for_pytorch",),
    extra="ipex", checks=(_shape_check,)))
class IpexIntLinear(IntQuantLinear):
    """4-bit QuantLinear running IPEX's weight-only-quantized linear."""

    def post_init(self) -> None:
        if self.packed:
            return
        try:
            from intel_extension_for_pytorch.llm.quantization import (
                IPEXWeightOnlyQuantizedLinear,
                QuantDtype,
                QuantMethod,
            )
        except ImportError as exc:
            raise missing("intel-extension-for-pytorch", "ipex") from exc
        d = self.desc
        method = QuantMethod.AWQ_GEMM if d.packing == "awq" else QuantMethod.GPTQ_GEMM
        self.ipex_linear = IPEXWeightOnlyQuantizedLinear.from_weight(
            self.qweight, self.scales, self.qzeros, d.in_features, d.out_features, None, self.bias, d.group,
            self.g_idx, quant_method=method, dtype=QuantDtype.INT4)
        self.packed = True

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.ipex_linear(x)


__all__ = ["IpexIntLinear"]

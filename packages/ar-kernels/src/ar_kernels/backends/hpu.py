"""The ``hpu`` backend: integer layers on Intel Gaudi when habana-frameworks is present.

Gaudi's graph compiler fuses the dequantize-then-matmul of the torch reference into one
kernel, so this backend runs the reference math on the ``hpu`` device after importing
``habana_frameworks.torch.core`` (which registers the device); it only ranks above ``torch``.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from ..errors import MissingDependencyError
from ..registry import BackendSpec, register_backend
from .base import IntQuantLinear

INSTALL = "install the Intel Gaudi software stack (habana-frameworks): https://docs.habana.ai"


@register_backend(BackendSpec(
    name="hpu:int", devices=("hpu",), bits=(2, 3, 4, 8), packings=("gptq", "auto_round", "awq"),
    dtypes=(torch.bfloat16, torch.float16, torch.float32), priority=30, requirements=("habana_frameworks",),
    install=INSTALL))
class HpuIntLinear(IntQuantLinear):
    """Integer QuantLinear for Gaudi: the reference math, compiled by the HPU graph."""

    def post_init(self) -> None:
        try:
            import habana_frameworks.torch.core  # noqa: F401  (registers the hpu device)
        except ImportError as exc:
            raise MissingDependencyError(f"habana-frameworks is not installed; {INSTALL}") from exc
        super().post_init()

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.dequantize(x.dtype), None if self.bias is None else self.bias.to(x.dtype))


__all__ = ["HpuIntLinear"]

"""The hand-off record between tuning (ar-core) and the exporters (ar-export)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .dtypes.base import QuantResult, get_quantizer
from .scheme import QuantScheme


@dataclass
class QuantizedLayer:
    """One quantized Linear: its scheme and the integer / element codes with their scales.

    Shapes: codes (out, in); scale and zero ``scale_shape((out, in), scheme)``.
    """

    name: str
    scheme: QuantScheme
    codes: Tensor
    scale: Tensor
    zero: Tensor | None = None
    global_scale: Tensor | None = None
    extra: dict[str, Tensor] = field(default_factory=dict)
    bias: Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.codes.shape[0]), int(self.codes.shape[1]))

    @classmethod
    def from_result(cls, name: str, scheme: QuantScheme, r: QuantResult, bias: Tensor | None = None
                    ) -> QuantizedLayer:
        codes = r.codes.detach()
        if codes.dtype != torch.float8_e4m3fn:
            codes = codes.round().to(torch.uint8)
        zero = None if r.zero is None else r.zero.detach().round().to(torch.int32)
        return cls(name=name, scheme=scheme, codes=codes.cpu(), scale=r.scale.detach().float().cpu(),
                   zero=None if zero is None else zero.cpu(),
                   global_scale=None if r.global_scale is None else r.global_scale.detach().float().cpu(),
                   extra={k: t.detach().cpu() for k, t in r.extra.items()},
                   bias=None if bias is None else bias.detach().cpu())

    def dequantize(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """The weight as the quantized model computes with it, shape (out, in)."""
        q = get_quantizer(self.scheme.data_type)
        return q.dequantize(self.codes, self.scale, self.zero, self.scheme, self.global_scale, self.extra).to(dtype)


@dataclass
class QuantizedModel:
    """Every quantized layer of a model plus what the exporters need to describe it."""

    layers: dict[str, QuantizedLayer]
    default_scheme: QuantScheme
    block_names: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # layer name -> why it stayed 16-bit
    options: dict[str, Any] = field(default_factory=dict)  # tuning options worth recording
    stats: dict[str, Any] = field(default_factory=dict)  # time, peak memory, losses per block

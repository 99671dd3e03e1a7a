"""The data-type registry and the grouping shared by every quantizer.

A quantizer maps a weight ``w`` of shape (out, in) to a dequantized tensor of the same shape,
differentiable with respect to the tuning learnables through straight-through rounding:

- ``v``: rounding offset, shape (out, in), added before rounding (bounded by the caller);
- ``min_scale`` / ``max_scale``: clip multipliers of each group's min and max, shape
  ``scale_shape(w.shape, scheme)`` (or broadcastable to it).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import choices_error
from ..scheme import QuantScheme


@dataclass
class QuantResult:
    """Output of a quantizer: the dequantized weight and what an exporter needs to pack it.

    codes: (out, in) integer-valued tensor. int: unsigned codes in [0, 2^bits - 1] with
    ``dequant = scale * (codes - zero)``; fp4 types: E2M1 codes (sign << 3 | magnitude index);
    fp8: the float8_e4m3fn values. scale / zero: ``scale_shape`` (fp32 / integer-valued).
    """

    dequant: Tensor
    codes: Tensor
    scale: Tensor
    zero: Tensor | None = None
    global_scale: Tensor | None = None
    extra: dict[str, Tensor] = field(default_factory=dict)


class Quantizer:
    """Base class: subclasses set ``data_types`` and implement ``quantize`` and ``dequantize``."""

    data_types: tuple[str, ...] = ()

    def quantize(self, w: Tensor, scheme: QuantScheme, v: Tensor | None = None,
                 min_scale: Tensor | None = None, max_scale: Tensor | None = None) -> QuantResult:
        raise NotImplementedError

    def dequantize(self, codes: Tensor, scale: Tensor, zero: Tensor | None, scheme: QuantScheme,
                   global_scale: Tensor | None = None, extra: dict[str, Tensor] | None = None) -> Tensor:
        raise NotImplementedError


_REGISTRY: dict[str, Quantizer] = {}


def register_dtype(*names: str) -> Callable[[type[Quantizer]], type[Quantizer]]:
    """Class decorator: ``@register_dtype("mx_fp", "mx_fp_rceil")`` registers one instance."""
    def deco(cls: type[Quantizer]) -> type[Quantizer]:
        inst = cls()
        for n in names:
            _REGISTRY[n] = inst
        cls.data_types = names
        return cls
    return deco


def get_quantizer(data_type: str) -> Quantizer:
    if data_type not in _REGISTRY:
        raise choices_error("data_type", data_type, sorted(_REGISTRY), hint="register one with @register_dtype")
    return _REGISTRY[data_type]


def registered_dtypes() -> list[str]:
    return sorted(_REGISTRY)


# ---- grouping --------------------------------------------------------------------------------
def scale_shape(shape: tuple[int, int], scheme: QuantScheme) -> tuple[int, int]:
    """Shape of the per-group scale tensor of a weight of ``shape`` = (out, in)."""
    out, inp = shape
    g = scheme.group_size
    if isinstance(g, tuple):
        return (-(-out // g[0]), -(-inp // g[1]))
    if g == 0:
        return (1, 1)
    if g == -1:
        return (out, 1)
    return (out, -(-inp // g))


def to_groups(w: Tensor, group_size: int | tuple[int, int]) -> Tensor:
    """(out, in) -> (G0, G1, n): every group on the last axis, zero-padded to full groups.

    G0 x G1 is ``scale_shape``; a 2-D block becomes one row of n = rows * cols values.
    """
    out, inp = w.shape
    if isinstance(group_size, tuple):
        r, c = group_size
        w = _pad(w, r, c)
        g0, g1 = w.shape[0] // r, w.shape[1] // c
        return w.reshape(g0, r, g1, c).permute(0, 2, 1, 3).reshape(g0, g1, r * c)
    if group_size == 0:
        return w.reshape(1, 1, -1)
    if group_size == -1:
        return w.reshape(out, 1, inp)
    w = _pad(w, 1, group_size)
    return w.reshape(out, -1, group_size)


def from_groups(wg: Tensor, shape: tuple[int, int], group_size: int | tuple[int, int]) -> Tensor:
    """Inverse of :func:`to_groups`, cropping the padding."""
    out, inp = shape
    if isinstance(group_size, tuple):
        r, c = group_size
        g0, g1, _ = wg.shape
        w = wg.reshape(g0, g1, r, c).permute(0, 2, 1, 3).reshape(g0 * r, g1 * c)
        return w[:out, :inp]
    return wg.reshape(out, -1)[:, :inp] if group_size > 0 else wg.reshape(out, inp)


def _pad(w: Tensor, r: int, c: int) -> Tensor:
    pr, pc = (-w.shape[0]) % r, (-w.shape[1]) % c
    return torch.nn.functional.pad(w, (0, pc, 0, pr)) if pr or pc else w


def round_ste(x: Tensor) -> Tensor:
    """Round with a straight-through gradient."""
    return (x.round() - x).detach() + x


def fp16_ste(x: Tensor) -> Tensor:
    """Round to the nearest fp16 value (how scales are stored), straight-through."""
    return (x.half().float() - x).detach() + x


def group_range(wg: Tensor, min_scale: Tensor | None, max_scale: Tensor | None) -> tuple[Tensor, Tensor]:
    """Per-group (min, max) including 0, shrunk or widened by the clip multipliers. Shapes (G0, G1)."""
    wmin = wg.amin(dim=-1).clamp(max=0)
    wmax = wg.amax(dim=-1).clamp(min=0)
    if min_scale is not None:
        wmin = wmin * min_scale
    if max_scale is not None:
        wmax = wmax * max_scale
    return wmin, wmax


def expand_groups(t: Tensor, shape: tuple[int, int], group_size: int | tuple[int, int]) -> Tensor:
    """Broadcast a per-group tensor (G0, G1) back to the weight shape (out, in)."""
    n = to_groups(torch.empty(shape, device="meta"), group_size).shape[-1]
    return from_groups(t.unsqueeze(-1).expand(*t.shape, n), shape, group_size)

"""Element grids of the small float formats (E2M1, E4M3) shared by the MX, NV and FP8 quantizers.

Rounding to a format is done on its grid directly, in fp32, so it is exact and differentiable:
within the binade [2^e, 2^(e+1)) the representable values are the multiples of
``ulp = 2^(e - mbits)`` (below the smallest normal binade the subnormal spacing continues), so
``round(y / ulp) * ulp`` is the nearest representable value. ``torch.round`` rounds half to
even, which on this integer mantissa is IEEE round-to-nearest-even. Values beyond the largest
finite value saturate to it (OCP MX and the FP8 casts of the field clamp the same way).

The rounding offset ``v`` of SignRound is taken in units of the local code spacing: the
element ``x`` becomes ``x + v * ulp(x)`` before rounding, so ``v = ±0.5`` moves a value by
half a step whatever its magnitude, as ``v`` does for integer codes. The sum is then rounded
to the nearest representable value with the spacing at its own magnitude (a value pushed up
into a coarser binade lands on that binade's grid).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import group_range, round_ste


@dataclass(frozen=True)
class FloatFormat:
    """A small IEEE-like float: ``ebits`` exponent bits, ``mbits`` mantissa bits, no inf."""

    name: str
    ebits: int
    mbits: int
    max: float  # largest finite value

    @property
    def bias(self) -> int:
        return 2 ** (self.ebits - 1) - 1

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal binade."""
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Exponent of the largest binade (the OCP spec's emax_elem)."""
        return math.floor(math.log2(self.max))


E2M1 = FloatFormat("e2m1", ebits=2, mbits=1, max=6.0)
E4M3 = FloatFormat("e4m3", ebits=4, mbits=3, max=448.0)  # e4m3fn: no inf, 0x7f / 0xff are NaN

# E2M1 magnitudes by index (code = sign << 3 | index)
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def floor_log2(x: Tensor) -> Tensor:
    """Exact floor(log2(|x|)) as an int32 tensor (frexp, not log2, so powers of two are exact)."""
    return torch.frexp(x.abs()).exponent - 1


def ulp(x: Tensor, fmt: FloatFormat) -> Tensor:
    """Spacing of the representable values of ``fmt`` at the magnitude of ``x`` (no gradient)."""
    e = floor_log2(x.detach()).clamp(fmt.emin, fmt.emax)
    return torch.ldexp(torch.ones_like(x, dtype=torch.float32), e - fmt.mbits)


def round_to_format(y: Tensor, fmt: FloatFormat) -> Tensor:
    """Nearest value of ``fmt`` (ties to even, saturating), straight-through. Same shape as y."""
    y = y.clamp(-fmt.max, fmt.max)  # saturate first: avoids inf - inf in the straight-through
    step = ulp(y, fmt)
    return round_ste(y / step) * step


def quantize_elements(x: Tensor, fmt: FloatFormat, v: Tensor | None = None) -> Tensor:
    """Round scaled elements ``x`` to ``fmt`` after adding ``v`` local steps (see module doc)."""
    if v is not None:
        x = x + v * ulp(x, fmt)
    return round_to_format(x, fmt)


def div_exact(a: Tensor, b: float) -> Tensor:
    """``a / b`` correctly rounded on every device.

    CUDA divides by a Python scalar as a multiplication by its reciprocal (1 ulp off for 448 or 6),
    so CPU and GPU scales would differ; dividing by a full tensor is IEEE division on both.
    """
    return a / torch.full_like(a, b)


def group_amax(wg: Tensor, min_scale: Tensor | None, max_scale: Tensor | None) -> Tensor:
    """Per-group clipped absolute maximum ``max(|min * min_scale|, |max * max_scale|)``, (G0, G1).

    The fp formats are symmetric, so one magnitude sets the scale; the tuned multipliers still
    act on each end separately, which keeps the SignRound learnables the same for every dtype.
    """
    wmin, wmax = group_range(wg, min_scale, max_scale)
    return torch.maximum(wmin.abs(), wmax.abs())


def e2m1_encode(q: Tensor) -> Tensor:
    """E2M1 values -> uint8 codes ``sign << 3 | index``; zero is always code 0."""
    table = torch.tensor(E2M1_VALUES, device=q.device)
    q = q.detach().float()
    index = torch.bucketize(q.abs(), table)
    return ((q < 0).to(torch.uint8) << 3) | index.to(torch.uint8)


def e2m1_decode(codes: Tensor) -> Tensor:
    """uint8 codes ``sign << 3 | index`` -> fp32 values (code 8, negative zero, gives -0.0)."""
    table = torch.tensor(E2M1_VALUES, device=codes.device)
    c = codes.to(torch.int64)
    mag = table[c & 7]
    return torch.where((c & 8) != 0, -mag, mag)


def e4m3_encode(q: Tensor) -> Tensor:
    """E4M3 values (already on the grid) -> ``torch.float8_e4m3fn``; exact by construction."""
    return q.detach().float().to(torch.float8_e4m3fn)

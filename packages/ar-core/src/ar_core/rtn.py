"""Round-to-nearest and optimized RTN.

Optimized RTN searches, per group, the clip factor of the min/max range that minimises the
quantization error weighted by an importance matrix (the mean of x^2 per input channel over
the calibration activations). The factor found is also the starting point of tuning.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ar_schemes import QuantResult, QuantScheme, quantize, scale_shape, to_groups

# clip factors tried per group: shrink to 40% or widen to 120% of the min/max range
SEARCH_GRID = torch.linspace(0.4, 1.2, 41).tolist()


def rtn(w: Tensor, scheme: QuantScheme) -> QuantResult:
    """Plain round-to-nearest of a (rows, in) weight."""
    return quantize(w.float(), scheme)


@torch.no_grad()
def search_clip(w: Tensor, scheme: QuantScheme, imatrix: Tensor | None = None,
                grid: list[float] | None = None) -> Tensor:
    """Per-group clip factor (shape ``scale_shape``) minimising the imatrix-weighted error.

    ``imatrix`` is (in,) importance per input channel; None weights all channels equally.
    """
    w = w.float()
    shape = tuple(w.shape)
    imp = torch.ones(shape[1], device=w.device) if imatrix is None else imatrix.float().to(w.device)
    imp = imp.clamp(min=imp.mean() * 1e-4 + 1e-12).expand(shape)  # never let a channel count zero
    impg = to_groups(imp.contiguous(), scheme.group_size)
    best_err = torch.full(scale_shape(shape, scheme), float("inf"), device=w.device)
    best = torch.ones_like(best_err)
    for f in grid or SEARCH_GRID:
        factor = torch.full_like(best, f)
        dq = quantize(w, scheme, min_scale=factor, max_scale=factor).dequant
        err = (to_groups(dq - w, scheme.group_size).pow(2) * impg).sum(-1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better, factor, best)
    return best


def optimized_rtn(w: Tensor, scheme: QuantScheme, imatrix: Tensor | None) -> tuple[QuantResult, Tensor]:
    """Quantize with the searched clip factors; returns the result and the factors."""
    clip = search_clip(w, scheme, imatrix)
    return quantize(w.float(), scheme, min_scale=clip, max_scale=clip), clip

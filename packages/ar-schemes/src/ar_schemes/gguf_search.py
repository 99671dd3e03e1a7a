"""Importance-weighted search of GGUF group scales and mins (the idea of llama.cpp's make_qkx / make_qx).

Plain min/max scaling wastes levels on outliers. For each group we try a small grid of scales
around the min/max one; for each, round the weights, then solve the weighted least-squares
problem for the best (scale, min) given those integer levels, and keep the candidate with the
smallest weighted error ``sum_j imatrix_j * (dq_j - w_j)^2`` (imatrix = mean squared input
activation per input channel, so this approximates the layer's output error).

Asymmetric k-quants then store each sub-group's scale and min as a 6-bit (q2_k: 4-bit) code
times a per-super-block fp16 value; :func:`refine_super_blocks` adapts the search result to that
storage (see ``gguf_refine.py``).

The result is returned as the ``min_scale`` / ``max_scale`` range multipliers that every
quantizer accepts, so ``quantize(w, scheme, min_scale=..., max_scale=...)`` reproduces the
searched parameters (then quantizes the scales per super-block) and tuning can start from them.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .dtypes.base import to_groups
from .dtypes.gguf import QK_K, GGMLType, ggml_type
from .errors import SchemeError
from .gguf_refine import refine_super_blocks
from .scheme import QuantScheme

_CHUNK = 1 << 24  # candidates x weights evaluated at once (memory bound)


def search_kquant_params(w: Tensor, scheme: QuantScheme, imatrix: Tensor | None = None,
                         nstep: int = 20) -> tuple[Tensor, Tensor]:
    """Searched (min_scale, max_scale) multipliers of shape ``scale_shape(w.shape, scheme)``.

    ``w`` (out, in); ``imatrix`` (in,) importance of each input channel (None: all equal).
    Works for the GGUF schemes (``int_dq`` k-quants and ``int_ggml`` q4_0 .. q8_0).

    >>> from ar_schemes import get_scheme, quantize
    >>> s = get_scheme("GGUF:Q4_K_S"); w = torch.randn(4, 256)
    >>> lo, hi = search_kquant_params(w, s)
    >>> quantize(w, s, min_scale=lo, max_scale=hi).dequant.shape
    torch.Size([4, 256])
    """
    t = ggml_type(scheme)
    if t.name == "iq4_nl":
        raise SchemeError("search_kquant_params does not cover iq4_nl (non-uniform levels); use quantize directly")
    g = t.group
    wg = to_groups(w.detach().float(), g)  # (out, G, g)
    imp = torch.ones(w.shape[1]) if imatrix is None else imatrix.detach().float().reshape(-1)
    if imp.numel() != w.shape[1]:
        raise SchemeError(f"imatrix has {imp.numel()} entries; the weight has {w.shape[1]} input channels")
    om = to_groups(imp.to(w.device).clamp(min=0).expand(w.shape[0], -1), g) + 1e-12
    rows = max(1, _CHUNK // max(1, nstep * wg.shape[1] * g))
    parts = [_search_rows(wg[i:i + rows], om[i:i + rows], t, nstep) for i in range(0, wg.shape[0], rows)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _search_rows(wg: Tensor, om: Tensor, t: GGMLType, nstep: int) -> tuple[Tensor, Tensor]:
    if t.sym:
        return _search_sym(wg, om, t, nstep)
    lo, hi = _search_asym(wg, om, t, nstep)
    if t.super_bits and wg.shape[1] % (QK_K // t.group) == 0:
        lo, hi = refine_super_blocks(wg, om, t, lo, hi)
    return lo, hi


def _weighted_error(x: Tensor, om: Tensor, scale: Tensor, mn: Tensor, levels: Tensor) -> Tensor:
    return (om * (scale.unsqueeze(-1) * levels + mn.unsqueeze(-1) - x) ** 2).sum(-1)


def _search_asym(wg: Tensor, om: Tensor, t, nstep: int) -> tuple[Tensor, Tensor]:
    """Asymmetric ``dq = scale * L + min``: grid over the inverse scale, least-squares refit of both."""
    top = 2**t.bits - 1
    clamp_zero = t.super_bits is not None  # k-quants store min as dmin * m with m >= 0
    wmin, wmax = wg.amin(-1), wg.amax(-1)
    if clamp_zero:
        wmin, wmax = wmin.clamp(max=0), wmax.clamp(min=0)
    rng = (wmax - wmin).clamp(min=1e-12)
    best_s, best_m = rng / top, wmin
    levels = ((wg - wmin.unsqueeze(-1)) / best_s.unsqueeze(-1)).round().clamp(0, top)
    best_err = _weighted_error(wg, om, best_s, best_m, levels)
    sw, swx = om.sum(-1), (om * wg).sum(-1)
    for k in range(nstep + 1):
        iscale = (top - 1.0 + 2.0 * k / nstep) / rng  # candidates from top-1 to top+1 levels over the range
        levels = (iscale.unsqueeze(-1) * (wg - wmin.unsqueeze(-1))).round().clamp(0, top)
        swl, swl2, swlx = (om * levels).sum(-1), (om * levels**2).sum(-1), (om * levels * wg).sum(-1)
        det = sw * swl2 - swl**2
        ok = det > 0
        scale = torch.where(ok, (sw * swlx - swl * swx) / torch.where(ok, det, 1), best_s)
        mn = torch.where(ok, (swl2 * swx - swl * swlx) / torch.where(ok, det, 1), best_m)
        if clamp_zero:  # a positive min is not storable: refit the scale alone with min = 0
            pos = mn > 0
            mn = torch.where(pos, torch.zeros_like(mn), mn)
            scale = torch.where(pos, swlx / swl2.clamp(min=1e-12), scale)
        err = _weighted_error(wg, om, scale, mn, levels)
        better = (err < best_err) & (scale > 0)
        best_err = torch.where(better, err, best_err)
        best_s, best_m = torch.where(better, scale, best_s), torch.where(better, mn, best_m)
    # back to multipliers: our quantizer's range is [wmin * min_scale, wmax * max_scale]
    min_scale = torch.where(wmin != 0, best_m / torch.where(wmin != 0, wmin, 1), torch.ones_like(wmin))
    hi = best_s * top + best_m
    max_scale = torch.where(wmax != 0, hi / torch.where(wmax != 0, wmax, 1), torch.ones_like(wmax))
    return min_scale, max_scale


def _search_sym(wg: Tensor, om: Tensor, t, nstep: int) -> tuple[Tensor, Tensor]:
    """Symmetric ``dq = scale * L``: grid of scales around the full-range one, least-squares refit."""
    half = 2 ** (t.bits - 1)
    lo, hi = (-127, 127) if t.name == "q8_0" else (-half, half - 1)
    wmin, wmax = wg.amin(-1).clamp(max=0), wg.amax(-1).clamp(min=0)
    if t.name == "q8_0":
        s0 = torch.maximum(-wmin, wmax) / 127
    else:
        s0 = torch.where(wmin.abs() >= wmax.abs(), wmin, wmax) / -half
    s0 = torch.where(s0 == 0, torch.ones_like(s0), s0)
    best_r, best_err = torch.ones_like(s0), torch.full_like(s0, float("inf"))
    zero = torch.zeros_like(s0)
    for k in range(nstep + 1):
        f = 0.7 + 0.4 * k / nstep  # scales from 70% to 110% of the full-range one
        levels = (wg / (s0 * f).unsqueeze(-1)).round().clamp(lo, hi)
        swl2, swlx = (om * levels**2).sum(-1), (om * levels * wg).sum(-1)
        scale = torch.where(swl2 > 0, swlx / swl2.clamp(min=1e-12), s0 * f)
        err = _weighted_error(wg, om, scale, zero, levels)
        r = scale / s0
        better = (err < best_err) & (r > 0)
        best_err, best_r = torch.where(better, err, best_err), torch.where(better, r, best_r)
    return best_r, best_r.clone()

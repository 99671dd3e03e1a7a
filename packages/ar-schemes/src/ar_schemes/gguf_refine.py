"""Adapt a searched asymmetric k-quant range (q2_k, q4_k, q5_k) to how it is stored.

The per-group search (``gguf_search``) finds a float scale ``s`` and min ``mn`` per sub-group,
``dq = s * L - mn``. The file stores them as integer codes times one fp16 value per 256-weight
super-block, ``s = d * sc`` and ``mn = dmin * m`` with ``sc, m`` in [0, 2^super_bits - 1] and
``d = max(s) / (2^super_bits - 1)``; rounding ``sc`` and ``m`` (16 levels for q2_k) costs
10-20% of the weighted error the search reached. With the storage fixed, two exact steps lower
``sum imatrix * (dq - w)^2`` again (each is kept only where it does):

1. per sub-group, try the codes ``sc +- 1`` and ``m +- 1`` (9 pairs), re-rounding the levels
   ``L = round((w + mn) / s)`` for each, and keep the best pair (a code at the top value stays,
   so ``max(sc)`` and with it ``d`` are unchanged);
2. per super-block, with codes and levels fixed, ``dq`` is linear in ``(d, dmin)``: solve the
   2x2 weighted least-squares normal equations, round to fp16, re-round the levels.

Both are repeated twice. The result is expressed as ``min_scale`` / ``max_scale`` multipliers
such that the ``int_dq`` quantizer reproduces exactly these ``d, sc, dmin, m``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .dtypes.gguf import QK_K, GGMLType

_ROUNDS = 2


def refine_super_blocks(wg: Tensor, om: Tensor, t: GGMLType, min_scale: Tensor, max_scale: Tensor
                        ) -> tuple[Tensor, Tensor]:
    """Refined multipliers (out, G) of grouped weights ``wg`` (out, G, g) with importance ``om``.

    G must be a whole number of super-blocks. Groups that do not straddle zero (their min is 0 or
    their max is 0) keep their multipliers: their scale and min are not independent there.
    """
    nsub, top_sc, top = QK_K // t.group, 2**t.super_bits - 1, 2**t.bits - 1
    wmin, wmax = wg.amin(-1).clamp(max=0), wg.amax(-1).clamp(min=0)
    lo_v, hi_v = wmin * min_scale, wmax * max_scale
    d, sc = _codes((hi_v - lo_v) / top, nsub, top_sc)  # (out, S), (out, S, nsub)
    dmin, m = _codes(-lo_v, nsub, top_sc)
    wp, op = _super(wg, nsub), _super(om, nsub)  # (out, S, nsub, g)
    free = _super((wmin < 0) & (wmax > 0), nsub)
    err = _error(wp, op, d, sc, dmin, m, top)  # (out, S, nsub)
    for _ in range(_ROUNDS):
        sc, m, err = _best_codes(wp, op, d, sc, dmin, m, err, free, top_sc, top)
        d, dmin, err = _refit(wp, op, d, sc, dmin, m, err, top)
    s = (d.unsqueeze(-1) * sc).reshape(wmin.shape)
    mn = (dmin.unsqueeze(-1) * m).reshape(wmin.shape)
    keep = ~free.reshape(wmin.shape)
    new_lo = torch.where(keep, min_scale, mn / torch.where(keep, -1.0, -wmin))
    new_hi = torch.where(keep, max_scale, (s * top - mn) / torch.where(keep, 1.0, wmax))
    return new_lo, new_hi


def _super(x: Tensor, nsub: int) -> Tensor:
    """(out, G, ...) -> (out, S, nsub, ...)."""
    return x.reshape(x.shape[0], x.shape[1] // nsub, nsub, *x.shape[2:])


def _codes(values: Tensor, nsub: int, top_sc: int) -> tuple[Tensor, Tensor]:
    """As the quantizer stores non-negative per-group values: fp16 ``d`` (out, S), codes (out, S, nsub)."""
    vp = _super(values, nsub)
    d = (vp.amax(-1) / top_sc).half().float()
    return d, (vp / _safe(d).unsqueeze(-1)).round().clamp(0, top_sc)


def _safe(x: Tensor) -> Tensor:
    return torch.where(x == 0, torch.ones_like(x), x)


def _error(wp: Tensor, op: Tensor, d: Tensor, sc: Tensor, dmin: Tensor, m: Tensor, top: int) -> Tensor:
    """Weighted error per sub-group with the levels the quantizer picks for these codes."""
    s, mn = (d.unsqueeze(-1) * sc).unsqueeze(-1), (dmin.unsqueeze(-1) * m).unsqueeze(-1)
    levels = ((wp + mn) / _safe(s)).round().clamp(0, top)
    return (op * (s * levels - mn - wp) ** 2).sum(-1)


def _best_codes(wp: Tensor, op: Tensor, d: Tensor, sc: Tensor, dmin: Tensor, m: Tensor, err: Tensor,
                free: Tensor, top_sc: int, top: int) -> tuple[Tensor, Tensor, Tensor]:
    """Step 1: the best of the codes one step either way, per sub-group."""
    best_sc, best_m = sc, m
    for a in (-1, 0, 1):
        for b in (-1, 0, 1):
            if a == b == 0:
                continue
            sc2, m2 = (sc + a).clamp(0, top_sc), (m + b).clamp(0, top_sc)
            ok = free & (sc2 > 0) & ~((sc == top_sc) & (a < 0)) & ~((m == top_sc) & (b < 0))
            e = _error(wp, op, d, sc2, dmin, m2, top)
            better = ok & (e < err)
            err = torch.where(better, e, err)
            best_sc, best_m = torch.where(better, sc2, best_sc), torch.where(better, m2, best_m)
    return best_sc, best_m, err


def _refit(wp: Tensor, op: Tensor, d: Tensor, sc: Tensor, dmin: Tensor, m: Tensor, err: Tensor, top: int
           ) -> tuple[Tensor, Tensor, Tensor]:
    """Step 2: weighted least squares of ``(d, dmin)`` per super-block, codes and levels fixed."""
    s, mn = (d.unsqueeze(-1) * sc).unsqueeze(-1), (dmin.unsqueeze(-1) * m).unsqueeze(-1)
    levels = ((wp + mn) / _safe(s)).round().clamp(0, top)
    d_new, dmin_new = super_least_squares(wp, op, sc, m, levels, dmin)
    d_new, dmin_new = d_new.half().float(), dmin_new.half().float()
    e_new = _error(wp, op, d_new, sc, dmin_new, m, top)
    better = (d_new > 0) & (dmin_new >= 0) & torch.isfinite(e_new.sum(-1)) & (e_new.sum(-1) < err.sum(-1))
    return (torch.where(better, d_new, d), torch.where(better, dmin_new, dmin),
            torch.where(better.unsqueeze(-1), e_new, err))


def super_least_squares(wp: Tensor, op: Tensor, sc: Tensor, m: Tensor, levels: Tensor, dmin: Tensor
                        ) -> tuple[Tensor, Tensor]:
    """argmin over (d, dmin) of ``sum op * (d * sc * L - dmin * m - w)^2`` per super-block (out, S).

    ``wp``, ``op``, ``levels`` (out, S, nsub, g); ``sc``, ``m`` (out, S, nsub). Where every ``m``
    is 0 the min drops out: d alone is fitted and ``dmin`` is returned unchanged.
    """
    a = sc.unsqueeze(-1) * levels  # dq = d * a + dmin * b
    b = -m.unsqueeze(-1).expand_as(a)
    saa, sab, sbb = ((op * x * y).sum((-2, -1)) for x, y in ((a, a), (a, b), (b, b)))
    saw, sbw = (op * a * wp).sum((-2, -1)), (op * b * wp).sum((-2, -1))
    det = saa * sbb - sab**2
    two = det > 1e-12 * saa * sbb.clamp(min=1e-30)
    d_new = torch.where(two, (saw * sbb - sab * sbw) / _safe(det), saw / _safe(saa))
    return d_new, torch.where(two, (saa * sbw - sab * saw) / _safe(det), dmin)

"""Round-to-nearest and optimized RTN: the importance-weighted search of each group's range.

Optimized RTN picks, per group, the clip multipliers ``(min_scale, max_scale)`` of the min/max
range that minimise the quantization error weighted by an importance matrix (imatrix: the mean
of x^2 per input channel over the calibration activations), ``sum_j imatrix_j * (dq_j - w_j)^2``,
a diagonal approximation of the layer's output error. The multipliers found are also the start
of tuning. What is searched depends on the data type (:func:`search_range`):

- every type: a grid of clip factors applied to both ends (:func:`search_clip`);
- GGUF (``int_dq`` k-quants, ``int_ggml`` legacy blocks but iq4_nl): weighted least-squares
  scale and min per group (``ar_schemes.search_kquant_params``), kept per super-block (per block
  for legacy types) where it beats the clip grid;
- with ``alg_ext``: symmetric int tries both signs of its full-range scale (which end of the
  group maps to -2^(b-1)) over a wider grid, each followed by a weighted least-squares refit of
  the scale; NVFP4 tries every E4M3 group scale from half to 1.4 times the max-derived one; per
  group the better of this and the clip grid is kept, so the weighted error is never above the
  plain search's. MX tries the shared power-of-two exponent two and one steps down, unchanged and
  one up: an MX group's error depends on its exponent alone and the clip grid reaches no other
  exponent, so this equals the grid's RTN error in 4 instead of 41 quantizer calls.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ar_schemes import (
    QuantResult,
    QuantScheme,
    ggml_type,
    quantize,
    scale_shape,
    search_kquant_params,
    to_groups,
)

# clip factors tried per group: shrink to 40% or widen to 120% of the min/max range
SEARCH_GRID = torch.linspace(0.4, 1.2, 41).tolist()
# alg_ext, symmetric int: scale factors of either end of the group, before the least-squares refit
EXT_GRID = torch.linspace(0.3, 1.6, 27).tolist()
EXT_CLIP_MAX = 2.0  # alg_ext: searched and tuned clip multipliers stay in [0, 2]
MIN_INT_SCALE = 1e-5  # the int quantizer's smallest scale magnitude
FP4_MAX = 6.0  # largest E2M1 value: an NVFP4 group's absmax maps to 6 x its scale


def rtn(w: Tensor, scheme: QuantScheme) -> QuantResult:
    """Plain round-to-nearest of a (rows, in) weight."""
    return quantize(w.float(), scheme)


def optimized_rtn(w: Tensor, scheme: QuantScheme, imatrix: Tensor | None, alg_ext: bool = False
                  ) -> tuple[QuantResult, tuple[Tensor, Tensor]]:
    """Quantize with the searched range; returns the result and its ``(min_scale, max_scale)``.

    >>> res, (lo, hi) = optimized_rtn(torch.randn(8, 128), get_scheme("W4A16"), None)  # doctest: +SKIP
    """
    lo, hi = search_range(w, scheme, imatrix, alg_ext)
    return quantize(w.float(), scheme, min_scale=lo, max_scale=hi), (lo, hi)


@torch.no_grad()
def search_range(w: Tensor, scheme: QuantScheme, imatrix: Tensor | None = None, alg_ext: bool = False
                 ) -> tuple[Tensor, Tensor]:
    """Per-group ``(min_scale, max_scale)`` (each ``scale_shape``) minimising the weighted error.

    ``w`` (rows, in); ``imatrix`` (in,) importance per input channel, None for all equal;
    ``alg_ext`` adds the data-type specific searches of the module docstring.
    """
    w = w.float()
    if alg_ext and scheme.data_type in ("mx_fp", "mx_fp_rceil"):  # exhaustive over the grid's exponents
        return _search_mx(w, scheme, _importance(w, scheme, imatrix))
    clip = search_clip(w, scheme, imatrix)
    if scheme.data_type in ("int_dq", "int_ggml") and ggml_type(scheme).name != "iq4_nl":
        lo, hi = search_kquant_params(w, scheme, imatrix)
    elif alg_ext and scheme.data_type == "int" and scheme.sym and isinstance(scheme.group_size, int):
        lo, hi = _search_sym_int(w, scheme, _importance(w, scheme, imatrix))
    elif alg_ext and scheme.data_type == "nv_fp":
        lo, hi = _search_nv(w, scheme, _importance(w, scheme, imatrix))
    else:
        return clip, clip.clone()
    return _keep_better(w, scheme, imatrix, (clip, clip), (lo, hi))


@torch.no_grad()
def search_clip(w: Tensor, scheme: QuantScheme, imatrix: Tensor | None = None,
                grid: list[float] | None = None) -> Tensor:
    """Per-group clip factor (shape ``scale_shape``) minimising the imatrix-weighted error.

    ``imatrix`` is (in,) importance per input channel; None weights all channels equally.
    """
    w = w.float()
    impg = _importance(w, scheme, imatrix)
    best_err = torch.full(scale_shape(tuple(w.shape), scheme), float("inf"), device=w.device)
    best = torch.ones_like(best_err)
    for f in grid or SEARCH_GRID:
        factor = torch.full_like(best, f)
        err = group_error(w, scheme, impg, factor, factor)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better, factor, best)
    return best


# ---- shared pieces ----------------------------------------------------------------------------
def _importance(w: Tensor, scheme: QuantScheme, imatrix: Tensor | None) -> Tensor:
    """Importance of every weight, grouped like the weight: (G0, G1, n)."""
    shape = tuple(w.shape)
    imp = torch.ones(shape[1], device=w.device) if imatrix is None else imatrix.float().to(w.device)
    imp = imp.clamp(min=imp.mean() * 1e-4 + 1e-12).expand(shape)  # never let a channel count zero
    return to_groups(imp.contiguous(), scheme.group_size)


def group_error(w: Tensor, scheme: QuantScheme, impg: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Weighted squared error per group (``scale_shape``) of the real quantizer with these multipliers."""
    dq = quantize(w, scheme, min_scale=lo, max_scale=hi).dequant
    return (to_groups(dq - w, scheme.group_size).pow(2) * impg).sum(-1)


def _keep_better(w: Tensor, scheme: QuantScheme, imatrix: Tensor | None, a: tuple[Tensor, Tensor],
                 b: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Per independent unit (a group; a 256-weight super-block for k-quants, whose sub-group scales
    share one quantized super scale) the multipliers of ``a`` or ``b`` with the lower error."""
    impg = _importance(w, scheme, imatrix)
    ea, eb = group_error(w, scheme, impg, *a), group_error(w, scheme, impg, *b)
    nsub = scheme.super_group_size if scheme.data_type == "int_dq" else 1
    if nsub and nsub > 1:  # (rows, G) -> per super-block sums, repeated over its sub-groups
        pad = (-ea.shape[1]) % nsub
        ea, eb = (torch.nn.functional.pad(e, (0, pad)).reshape(e.shape[0], -1, nsub).sum(-1)
                  .repeat_interleave(nsub, dim=1)[:, :e.shape[1]] for e in (ea, eb))
    use_b = eb < ea
    return torch.where(use_b, b[0], a[0]), torch.where(use_b, b[1], a[1])


# ---- alg_ext: symmetric int -------------------------------------------------------------------
def _search_sym_int(w: Tensor, scheme: QuantScheme, impg: Tensor) -> tuple[Tensor, Tensor]:
    """Full-range sym int maps one end of the group to -2^(b-1): try both ends (both signs of the
    scale) times ``EXT_GRID``, refit each scale by weighted least squares on its rounded levels."""
    wg = to_groups(w, scheme.group_size)  # (G0, G1, n)
    half = 2 ** (scheme.bits - 1)
    wmin, wmax = wg.amin(-1).clamp(max=0), wg.amax(-1).clamp(min=0)
    best_err = torch.full_like(wmin, float("inf"))
    best_s = torch.zeros_like(wmin)
    for end in (wmin, wmax):
        for f in EXT_GRID:
            s = _storable(-end * f / half, wmin, wmax, half)
            for cand in (s, _storable(_refit(wg, impg, s, half), wmin, wmax, half)):
                err = _sym_error(wg, impg, cand, half)
                better = (err < best_err) & (cand != 0)
                best_err, best_s = torch.where(better, err, best_err), torch.where(better, cand, best_s)
    return _sym_multipliers(best_s, wmin, wmax, half)


def _levels(wg: Tensor, s: Tensor, half: int) -> Tensor:
    safe = torch.where(s == 0, torch.ones_like(s), s)
    return (wg / safe.unsqueeze(-1)).round().clamp(-half, half - 1)


def _sym_error(wg: Tensor, impg: Tensor, s: Tensor, half: int) -> Tensor:
    return (impg * (_levels(wg, s, half) * s.unsqueeze(-1) - wg) ** 2).sum(-1)


def _refit(wg: Tensor, impg: Tensor, s: Tensor, half: int) -> Tensor:
    """argmin_t sum imp * (t * L - w)^2 for the levels L of scale ``s``: t = <imp L, w> / <imp L, L>."""
    lv = _levels(wg, s, half)
    num, den = (impg * lv * wg).sum(-1), (impg * lv * lv).sum(-1)
    return torch.where(den > 0, num / den.clamp(min=1e-30), s)


def _storable(s: Tensor, wmin: Tensor, wmax: Tensor, half: int) -> Tensor:
    """The scale the quantizer will use for ``s`` (fp16, |s| >= 1e-5, multipliers <= EXT_CLIP_MAX);
    0 where the end it needs is 0 (a positive scale needs a negative min, a negative one a positive max)."""
    end = torch.where(s > 0, -wmin, wmax)
    s = torch.sign(s) * torch.minimum(s.abs(), end * EXT_CLIP_MAX / half).clamp(min=MIN_INT_SCALE)
    return torch.where(end > 0, s.half().float(), torch.zeros_like(s))


def _sym_multipliers(s: Tensor, wmin: Tensor, wmax: Tensor, half: int) -> tuple[Tensor, Tensor]:
    """Multipliers giving the signed scale ``s``: the end that maps to -2^(b-1) (min for s > 0) is
    scaled to |s| * 2^(b-1); the other end to at most 95% of that, so it stays the smaller one."""
    pos = s > 0
    a = s.abs() * half
    dom, other = torch.where(pos, -wmin, wmax), torch.where(pos, wmax, -wmin)
    m_dom = torch.where(dom > 0, a / dom.clamp(min=1e-30), torch.ones_like(a))
    m_other = torch.where(other > 0, torch.minimum(m_dom, 0.95 * a / other.clamp(min=1e-30)), m_dom)
    keep = s == 0  # nothing found (an all-zero group): plain range
    lo = torch.where(keep, torch.ones_like(a), torch.where(pos, m_dom, m_other))
    hi = torch.where(keep, torch.ones_like(a), torch.where(pos, m_other, m_dom))
    return lo, hi


# ---- alg_ext: MX and NVFP4 --------------------------------------------------------------------
def _search_mx(w: Tensor, scheme: QuantScheme, impg: Tensor) -> tuple[Tensor, Tensor]:
    """The MX group scale is 2^e with e from the group's absmax: the multiplier 2^k shifts e by
    exactly k. Tries k = -2 .. 1 (every exponent a clip factor in [0.4, 1.2] reaches)."""
    ones = torch.ones(scale_shape(tuple(w.shape), scheme), device=w.device)
    return _best_of(w, scheme, impg, [(ones * 2.0**k, ones * 2.0**k) for k in (-2, -1, 0, 1)])


def _search_nv(w: Tensor, scheme: QuantScheme, impg: Tensor) -> tuple[Tensor, Tensor]:
    """NVFP4 group scales are E4M3 values: try each from 0.5x to 1.4x the max-derived one (their
    uint8 codes are monotonic in the value, so neighbours are code +- k)."""
    res = quantize(w, scheme)
    s8 = res.extra["scale_e4m3"]  # (G0, G1) float8_e4m3fn
    code, base = s8.view(torch.uint8).to(torch.int32), s8.float()
    amax = to_groups(w, scheme.group_size).abs().amax(-1)
    safe = torch.where(amax > 0, amax, torch.ones_like(amax))
    cands = []
    for k in range(-8, 4):
        val = (code + k).clamp(1, 0x7E).to(torch.uint8).view(torch.float8_e4m3fn).float()
        ok = (amax > 0) & (val >= 0.5 * base) & (val <= 1.4 * base)
        # the quantizer's group scale is round_e4m3(amax' / 6 * global): amax' = val * 6 / global gives val
        f = (val * FP4_MAX / res.global_scale / safe).clamp(max=EXT_CLIP_MAX)
        cands.append((torch.where(ok, f, torch.ones_like(f)),) * 2)
    return _best_of(w, scheme, impg, cands)


def _best_of(w: Tensor, scheme: QuantScheme, impg: Tensor, cands: list[tuple[Tensor, Tensor]]
             ) -> tuple[Tensor, Tensor]:
    """Per group, the candidate multipliers with the lowest error under the real quantizer."""
    best_err = torch.full(cands[0][0].shape, float("inf"), device=w.device)
    lo, hi = torch.ones_like(best_err), torch.ones_like(best_err)
    for c_lo, c_hi in cands:
        err = group_error(w, scheme, impg, c_lo, c_hi)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        lo, hi = torch.where(better, c_lo, lo), torch.where(better, c_hi, hi)
    return lo, hi

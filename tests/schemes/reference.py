"""Float64 references for the quantizers, written from the format definitions (not from ar_schemes).

Grouping here is done by plain reshapes so that a bug in ``to_groups`` shows up as a mismatch.
"""
from __future__ import annotations

import math

import torch

F64 = torch.float64


# ---- grouping (independent of ar_schemes.dtypes.base) -------------------------------------------
def groups64(w: torch.Tensor, group_size) -> torch.Tensor:
    """(out, in) -> (G0, G1, n) float64, zero padded; 2-D blocks flattened row-major."""
    w = w.to(F64)
    out, inp = w.shape
    if isinstance(group_size, tuple):
        r, c = group_size
        g0, g1 = math.ceil(out / r), math.ceil(inp / c)
        p = torch.zeros(g0 * r, g1 * c, dtype=F64)
        p[:out, :inp] = w
        return torch.stack([torch.stack([p[i * r:(i + 1) * r, j * c:(j + 1) * c].reshape(-1) for j in range(g1)])
                            for i in range(g0)])
    if group_size == 0:
        return w.reshape(1, 1, -1)
    if group_size == -1:
        return w.reshape(out, 1, inp)
    g1 = math.ceil(inp / group_size)
    p = torch.zeros(out, g1 * group_size, dtype=F64)
    p[:, :inp] = w
    return p.reshape(out, g1, group_size)


def ungroup64(g: torch.Tensor, shape, group_size) -> torch.Tensor:
    out, inp = shape
    if isinstance(group_size, tuple):
        r, c = group_size
        g0, g1, _ = g.shape
        full = torch.zeros(g0 * r, g1 * c, dtype=g.dtype)
        for i in range(g0):
            for j in range(g1):
                full[i * r:(i + 1) * r, j * c:(j + 1) * c] = g[i, j].reshape(r, c)
        return full[:out, :inp]
    return g.reshape(out, -1)[:, :inp]


def clipped_range64(wg, min_scale=None, max_scale=None):
    wmin = wg.min(dim=-1).values.clamp(max=0)
    wmax = wg.max(dim=-1).values.clamp(min=0)
    if min_scale is not None:
        wmin = wmin * min_scale.to(F64)
    if max_scale is not None:
        wmax = wmax * max_scale.to(F64)
    return wmin, wmax


# ---- int -----------------------------------------------------------------------------------------
def fp16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float16).to(F64)


def int_ref(w, bits, sym, group_size, v=None, min_scale=None, max_scale=None):
    """(dequant, codes, scale, zero) of the reference's int rounding, in float64."""
    wg = groups64(w, group_size)
    wmin, wmax = clipped_range64(wg, min_scale, max_scale)
    if sym:
        half = 2 ** (bits - 1)
        scale = torch.where(wmin.abs() >= wmax.abs(), -wmin, -wmax) / half
        scale = torch.where(scale < 0, -1.0, 1.0).to(F64) * scale.abs().clamp(min=1e-5)
        scale = fp16(scale)
        zero = torch.full_like(scale, half)
    else:
        scale = fp16(((wmax - wmin) / (2**bits - 1)).clamp(min=1e-5))
        zero = torch.round(-wmin / scale).clamp(0, 2**bits - 1)
    x = wg / scale[..., None]
    if v is not None:
        x = x + groups64(v, group_size)
    q = (torch.round(x) + zero[..., None]).clamp(0, 2**bits - 1)
    dq = (q - zero[..., None]) * scale[..., None]
    shape = tuple(w.shape)
    return ungroup64(dq, shape, group_size), ungroup64(q, shape, group_size), scale, zero


# ---- small floats --------------------------------------------------------------------------------
E2M1_MAGS = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
FORMATS = {  # name: (mbits, emin, emax, max)
    "e2m1": (1, 0, 2, 6.0),
    "e4m3": (3, -6, 8, 448.0),
}


def e4m3_all_values() -> torch.Tensor:
    """Every finite float8_e4m3fn value, by bit pattern 0..255 (NaNs 0x7f / 0xff dropped)."""
    bits = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    vals = bits.view(torch.float8_e4m3fn).to(F64)
    return vals[~torch.isnan(vals)]


def _magnitudes(fmt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted non-negative magnitudes and whether each has an even mantissa (the tie winner)."""
    if fmt == "e2m1":
        mags = torch.tensor(E2M1_MAGS, dtype=F64)
        return mags, torch.arange(8) % 2 == 0
    codes = torch.arange(0, 0x7F, dtype=torch.int32)  # positive finite e4m3 patterns
    mags = codes.to(torch.uint8).view(torch.float8_e4m3fn).to(F64)
    return mags, codes % 2 == 0


def nearest64(x: torch.Tensor, fmt: str) -> torch.Tensor:
    """Nearest representable value by search over the whole grid, ties to even mantissa."""
    mags, even = _magnitudes(fmt)
    a = x.to(F64).abs().unsqueeze(-1)
    d = (a - mags).abs()
    best = d.min(dim=-1, keepdim=True).values
    tie_ok = (d == best) & (even | ((d == best).sum(-1, keepdim=True) == 1))
    idx = tie_ok.to(torch.int64).argmax(dim=-1)
    return torch.where(x < 0, -mags[idx], mags[idx])


def ulp64(x: torch.Tensor, fmt: str) -> torch.Tensor:
    mbits, emin, emax, _ = FORMATS[fmt]
    e = torch.floor(torch.log2(x.to(F64).abs().clamp(min=1e-300))).clamp(emin, emax)
    return torch.pow(2.0, e - mbits)


def fp_elements64(x: torch.Tensor, fmt: str, v=None) -> torch.Tensor:
    """x + v local steps, then nearest value of the format (saturating)."""
    x = x.to(F64)
    if v is not None:
        x = x + v.to(F64) * ulp64(x, fmt)
    return nearest64(x, fmt)


def mx_ref(w, bits, rceil, v=None, min_scale=None, max_scale=None, group_size=32):
    fmt = "e2m1" if bits == 4 else "e4m3"
    mbits, emin, emax, fmax = FORMATS[fmt]
    wg = groups64(w, group_size)
    wmin, wmax = clipped_range64(wg, min_scale, max_scale)
    amax = torch.maximum(wmin.abs(), wmax.abs())
    e = torch.empty_like(amax)
    for idx, a in enumerate(amax.reshape(-1).tolist()):
        if a == 0:
            val = -127
        elif rceil:
            val = math.ceil(math.log2(a / fmax))
        else:
            val = math.floor(math.log2(a)) - emax
        e.view(-1)[idx] = min(max(val, -127), 127)
    scale = torch.pow(2.0, e)
    vg = None if v is None else groups64(v, group_size)
    q = fp_elements64(wg / scale[..., None], fmt, vg)
    shape = tuple(w.shape)
    return ungroup64(q * scale[..., None], shape, group_size), ungroup64(q, shape, group_size), scale, e


def nv_ref(w, v=None, min_scale=None, max_scale=None, group_size=16):
    wg = groups64(w, group_size)
    amax_t = w.to(F64).abs().max()
    gscale = 448.0 * 6.0 / amax_t if amax_t > 0 else torch.tensor(1.0, dtype=F64)
    wmin, wmax = clipped_range64(wg, min_scale, max_scale)
    amax = torch.maximum(wmin.abs(), wmax.abs())
    s8 = nearest64(amax / 6.0 * gscale, "e4m3")
    scale = s8 / gscale
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    x = torch.where(scale[..., None] > 0, wg / safe[..., None], torch.zeros_like(wg))
    q = fp_elements64(x, "e2m1", None if v is None else groups64(v, group_size))
    shape = tuple(w.shape)
    return ungroup64(q * scale[..., None], shape, group_size), ungroup64(q, shape, group_size), scale, s8, gscale


def fp8_ref(w, group_size, v=None, min_scale=None, max_scale=None):
    wg = groups64(w, group_size)
    wmin, wmax = clipped_range64(wg, min_scale, max_scale)
    scale = (torch.maximum(wmin.abs(), wmax.abs()) / 448.0).clamp(min=1e-12)
    q = fp_elements64(wg / scale[..., None], "e4m3", None if v is None else groups64(v, group_size))
    shape = tuple(w.shape)
    return ungroup64(q * scale[..., None], shape, group_size), ungroup64(q, shape, group_size), scale


def e2m1_value_of_code(code: int) -> float:
    mag = E2M1_MAGS[code & 7]
    return -mag if code & 8 else mag

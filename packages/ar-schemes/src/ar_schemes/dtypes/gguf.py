"""GGUF (ggml) block types: the k-quants ("int_dq") and the legacy 32-element blocks ("int_ggml").

k-quants group 256 weights into a super-block of 16 (or 8) sub-groups. Each sub-group has its
own scale (and, asymmetric types, min) stored as a small integer code ``sc`` (``m``) that is
multiplied by one fp16 super-block scale ``d`` (``dmin``)::

    asym (q2_k, q4_k, q5_k):  w = d * sc * q - dmin * m          q in [0, 2^b - 1]
    sym  (q3_k, q6_k):        w = d * sc * (codes - 2^(b-1))     sc signed

The legacy types keep one fp16 ``d`` (and ``m``) per 32 weights and round exactly as ggml's
reference quantizer does, so a GGUF file written from our codes is byte-identical to
llama.cpp's own for plain RTN:

    q4_0 / q5_0 / q8_0:  w = d * (codes - zero)   (q8_0: d = amax / 127, codes - 128 in [-127, 127])
    q4_1 / q5_1:         w = d * codes + m        (m = the fp16 block minimum, no integer zero point)
    iq4_nl:              w = d * IQ4_NL_GRID[codes]

Dequantization repeats ggml's float operations in the same order, so ``dequantize`` equals
``gguf.quants.dequantize`` of the packed bytes bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import SchemeError, choices_error
from ..scheme import QuantScheme
from .base import (
    Quantizer,
    QuantResult,
    expand_groups,
    fp16_ste,
    from_groups,
    register_dtype,
    round_ste,
    to_groups,
)

QK_K = 256  # weights per k-quant super-block


@dataclass(frozen=True)
class GGMLType:
    """Block math of one ggml type: element bits, group size, sym, and super-block scale bits."""

    name: str
    bits: int
    group: int
    sym: bool
    super_bits: int | None = None  # bits of the sub-group scale codes (k-quants only)

    @property
    def block(self) -> int:
        """Weights per ggml block: a row must be a multiple of this."""
        return QK_K if self.super_bits else self.group


GGML_TYPES: dict[str, GGMLType] = {t.name: t for t in (
    GGMLType("q4_0", 4, 32, True), GGMLType("q4_1", 4, 32, False),
    GGMLType("q5_0", 5, 32, True), GGMLType("q5_1", 5, 32, False),
    GGMLType("q8_0", 8, 32, True), GGMLType("iq4_nl", 4, 32, True),
    GGMLType("q2_k", 2, 16, False, 4), GGMLType("q3_k", 3, 16, True, 6),
    GGMLType("q4_k", 4, 32, False, 6), GGMLType("q5_k", 5, 32, False, 6),
    GGMLType("q6_k", 6, 16, True, 8),
)}

# the 16 non-uniform levels of iq4_nl (ggml's kvalues_iq4nl)
IQ4_NL_GRID = (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)


def ggml_type(scheme: QuantScheme) -> GGMLType:
    """The ggml block type of a GGUF scheme; ``q4_k_m`` style preset names map to ``q4_k``."""
    name = (scheme.gguf or "").lower()
    base = name[:-2] if name[-2:] in ("_s", "_m", "_l") and "_k" in name else name
    if base not in GGML_TYPES:
        raise choices_error("ggml type", scheme.gguf, GGML_TYPES, hint="set QuantScheme.gguf to one of them")
    return GGML_TYPES[base]


def ggml_scheme(name: str) -> QuantScheme:
    """A QuantScheme with the block math of the ggml type ``name`` (``"q6_k"``, ``"q5_0"``...)."""
    if name not in GGML_TYPES:
        raise choices_error("ggml type", name, GGML_TYPES)
    t = GGML_TYPES[name]
    if t.super_bits:
        return QuantScheme(bits=t.bits, group_size=t.group, sym=t.sym, data_type="int_dq", super_bits=t.super_bits,
                           super_group_size=QK_K // t.group, gguf=name)
    return QuantScheme(bits=t.bits, group_size=t.group, sym=t.sym, data_type="int_ggml", gguf=name)


# ---- k-quants -------------------------------------------------------------------------------------
def _to_super(t: Tensor, nsub: int) -> Tensor:
    """(out, G) per-group values -> (out, S, nsub), zero-padded to whole super-blocks."""
    pad = (-t.shape[1]) % nsub
    if pad:
        t = torch.nn.functional.pad(t, (0, pad))
    return t.reshape(t.shape[0], -1, nsub)


def _from_super(t: Tensor, ngroups: int) -> Tensor:
    return t.reshape(t.shape[0], -1)[:, :ngroups]


def _safe(x: Tensor) -> Tensor:
    """Divisor without zeros: a zero scale leaves its group at the min (or 0), as ggml does."""
    return torch.where(x == 0, torch.ones_like(x), x)


def quantize_unsigned_scales(s: Tensor, nsub: int, bits: int) -> tuple[Tensor, Tensor]:
    """Non-negative per-group values (out, G) -> fp16 super scale d (out, S) and codes (out, G).

    The largest value of each super-block maps to the top code 2^bits - 1.
    """
    top = 2**bits - 1
    sp = _to_super(s, nsub)  # (out, S, nsub)
    d = fp16_ste(sp.amax(dim=-1) / top)  # (out, S)
    codes = round_ste(sp / _safe(d).unsqueeze(-1)).clamp(0, top)
    return d, _from_super(codes, s.shape[1])


def quantize_signed_scales(s: Tensor, nsub: int, bits: int) -> tuple[Tensor, Tensor]:
    """Signed per-group scales (out, G) -> fp16 d (out, S) and codes in [-2^(bits-1), 2^(bits-1) - 1].

    Full range, like the weights: the scale of largest magnitude maps to -2^(bits-1), so d takes
    the opposite sign of that scale (ggml's q3_K / q6_K do the same).
    """
    half = 2 ** (bits - 1)
    sp = _to_super(s, nsub)
    idx = sp.abs().argmax(dim=-1, keepdim=True)
    d = fp16_ste(torch.gather(sp, -1, idx).squeeze(-1) / -half)
    codes = round_ste(sp / _safe(d).unsqueeze(-1)).clamp(-half, half - 1)
    return d, _from_super(codes, s.shape[1])


def _expand_super(d: Tensor, ngroups: int, nsub: int) -> Tensor:
    """(out, S) -> (out, G): each super-block value repeated over its sub-groups."""
    return d.repeat_interleave(nsub, dim=1)[:, :ngroups]


def _range(wg: Tensor, min_scale: Tensor | None, max_scale: Tensor | None, clamp_zero: bool) -> tuple[Tensor, Tensor]:
    wmin, wmax = wg.amin(dim=-1), wg.amax(dim=-1)
    if clamp_zero:
        wmin, wmax = wmin.clamp(max=0), wmax.clamp(min=0)
    if min_scale is not None:
        wmin = wmin * min_scale
    if max_scale is not None:
        wmax = wmax * max_scale
    return wmin, wmax


@register_dtype("int_dq")
class KQuantQuantizer(Quantizer):
    """GGUF k-quants: integer codes, sub-group scales quantized again per 256-weight super-block.

    ``scale`` holds the effective fp32 sub-group scale ``d * sc``; ``extra`` holds ``d`` (fp16,
    (out, S)), ``sc`` (int16 (out, G)) and, asymmetric types, ``dmin`` and ``m``. ``zero`` is
    2^(b-1) for symmetric types and None for asymmetric ones (their min is ``dmin * m``).
    """

    def quantize(self, w: Tensor, scheme: QuantScheme, v: Tensor | None = None,
                 min_scale: Tensor | None = None, max_scale: Tensor | None = None) -> QuantResult:
        g, nsub, bits = _kquant_shape(scheme)
        wg = to_groups(w.float(), g)  # (out, G, g)
        vg = None if v is None else to_groups(v, g)
        ngroups = wg.shape[1]
        wmin, wmax = _range(wg, min_scale, max_scale, clamp_zero=True)
        if scheme.sym:
            half = 2 ** (bits - 1)
            s = torch.where(wmin.abs() >= wmax.abs(), -wmin, -wmax) / half
            d, sc = quantize_signed_scales(s, nsub, scheme.super_bits)
            scale = _expand_super(d, ngroups, nsub) * sc  # (out, G)
            x = wg / _safe(scale).unsqueeze(-1) + (0 if vg is None else vg)
            q = round_ste(x).clamp(-half, half - 1)
            dq, codes, extra = scale.unsqueeze(-1) * q, q + half, {"d": d, "sc": sc}
            zero = torch.full_like(scale, float(half))
        else:
            top = 2**bits - 1
            d, sc = quantize_unsigned_scales((wmax - wmin) / top, nsub, scheme.super_bits)
            dmin, m = quantize_unsigned_scales(-wmin, nsub, scheme.super_bits)
            scale = _expand_super(d, ngroups, nsub) * sc
            mn = _expand_super(dmin, ngroups, nsub) * m
            x = (wg + mn.unsqueeze(-1)) / _safe(scale).unsqueeze(-1) + (0 if vg is None else vg)
            codes = round_ste(x).clamp(0, top)
            dq, zero = scale.unsqueeze(-1) * codes - mn.unsqueeze(-1), None
            extra = {"d": d, "sc": sc, "dmin": dmin, "m": m}
        shape = tuple(w.shape)
        return QuantResult(dequant=from_groups(dq, shape, g), codes=from_groups(codes, shape, g), scale=scale,
                           zero=zero, extra=_store_extra(extra))

    def dequantize(self, codes: Tensor, scale: Tensor, zero: Tensor | None, scheme: QuantScheme,
                   global_scale: Tensor | None = None, extra: dict[str, Tensor] | None = None) -> Tensor:
        """ggml's float operations in ggml's order: ``(d * sc) * q - (dmin * m)``."""
        g, nsub, bits = _kquant_shape(scheme)
        if not extra or "d" not in extra:
            raise SchemeError("int_dq dequantize needs extra['d'] and extra['sc'] (the super-block scales)")
        shape = tuple(codes.shape)
        ngroups = extra["sc"].shape[1]
        scale = _expand_super(extra["d"].float(), ngroups, nsub) * extra["sc"].float()
        q = codes.float() - (2 ** (bits - 1) if scheme.sym else 0)
        out = expand_groups(scale, shape, g) * q
        if not scheme.sym:
            mn = _expand_super(extra["dmin"].float(), ngroups, nsub) * extra["m"].float()
            out = out - expand_groups(mn, shape, g)
        return out


def _kquant_shape(scheme: QuantScheme) -> tuple[int, int, int]:
    g = scheme.group_size
    if not isinstance(g, int) or g <= 0 or scheme.super_group_size is None or scheme.super_bits is None:
        raise SchemeError(f"int_dq needs a positive group_size and super_bits/super_group_size; got group_size={g!r}, "
                          f"super_bits={scheme.super_bits}, super_group_size={scheme.super_group_size}")
    return g, scheme.super_group_size, scheme.bits


def _store_extra(extra: dict[str, Tensor]) -> dict[str, Tensor]:
    """Super scales as fp16 (their stored type), integer codes as int16; gradients kept off."""
    return {k: (t.detach().half() if k in ("d", "dmin") else t.detach().round().to(torch.int16))
            for k, t in extra.items()}


# ---- legacy 32-weight blocks ----------------------------------------------------------------------
def round_half_away(x: Tensor) -> Tensor:
    """C ``roundf``: halves go away from zero (torch.round goes to even)."""
    a = x.abs()
    f = a.floor()
    return torch.sign(x) * torch.where(a - f >= 0.5, f + 1, f)


def _ste(x: Tensor, y: Tensor) -> Tensor:
    """Value of ``y`` exactly (``y - x + x`` may round), gradient of ``x``."""
    return y.detach() + (x - x.detach())


@register_dtype("int_ggml")
class GGMLLegacyQuantizer(Quantizer):
    """q4_0, q4_1, q5_0, q5_1, q8_0 and iq4_nl with ggml's own rounding (see the module docstring).

    Codes are computed from the fp32 block scale and the fp16 scale is stored, as ggml does;
    q4_1/q5_1 put the fp16 block min in ``extra["min"]`` and leave ``zero`` None.
    """

    def quantize(self, w: Tensor, scheme: QuantScheme, v: Tensor | None = None,
                 min_scale: Tensor | None = None, max_scale: Tensor | None = None) -> QuantResult:
        t = _legacy_type(scheme)
        wg = to_groups(w.float(), t.group)
        vg = 0 if v is None else to_groups(v, t.group)
        if t.name == "iq4_nl":
            scale, codes, dq, zero, extra = _iq4_nl(wg, vg, min_scale, max_scale)
        elif t.sym:
            scale, codes, dq, zero, extra = _legacy_sym(wg, vg, t, min_scale, max_scale)
        else:
            scale, codes, dq, zero, extra = _legacy_asym(wg, vg, t, min_scale, max_scale)
        shape = tuple(w.shape)
        return QuantResult(dequant=from_groups(dq, shape, t.group), codes=from_groups(codes, shape, t.group),
                           scale=scale, zero=zero, extra=extra)

    def dequantize(self, codes: Tensor, scale: Tensor, zero: Tensor | None, scheme: QuantScheme,
                   global_scale: Tensor | None = None, extra: dict[str, Tensor] | None = None) -> Tensor:
        t = _legacy_type(scheme)
        shape = tuple(codes.shape)
        d = expand_groups(scale.float(), shape, t.group)
        if t.name == "iq4_nl":
            return d * torch.tensor(IQ4_NL_GRID, dtype=torch.float32)[codes.long()]
        if t.sym:
            return d * (codes.float() - 2 ** (t.bits - 1))
        if not extra or "min" not in extra:
            raise SchemeError(f"{t.name} dequantize needs extra['min'] (the fp16 block minimum)")
        return d * codes.float() + expand_groups(extra["min"].float(), shape, t.group)


def _legacy_type(scheme: QuantScheme) -> GGMLType:
    t = ggml_type(scheme)
    if t.super_bits:
        raise SchemeError(f"ggml type {t.name!r} is a k-quant: use data_type 'int_dq' for it, not 'int_ggml'")
    return t


def _legacy_sym(wg: Tensor, vg: Tensor | float, t: GGMLType, min_scale: Tensor | None, max_scale: Tensor | None):
    """q4_0 / q5_0: d = (signed largest-magnitude weight) / -2^(b-1); q8_0: d = amax / 127."""
    wmin, wmax = _range(wg, min_scale, max_scale, clamp_zero=True)
    half = 2 ** (t.bits - 1)
    if t.name == "q8_0":
        d32 = torch.maximum(wmin.abs(), wmax) / 127
    else:
        d32 = torch.where(wmin.abs() >= wmax.abs(), wmin, wmax) / -half
    inv = torch.where(d32 == 0, torch.zeros_like(d32), 1 / _safe(d32)).unsqueeze(-1)
    x = wg * inv + vg
    if t.name == "q8_0":
        q = _ste(x, round_half_away(x)).clamp(-127, 127)
    else:  # ggml: trunc(x + half + 0.5), clamped to the code range
        q = _ste(x, torch.trunc(x + (half + 0.5)) - half).clamp(-half, half - 1)
    d = torch.where(d32 == 0, d32, fp16_ste(d32))  # keep ggml's -0.0 of an all-zero block
    zero = torch.full_like(d, float(half))
    return d, q + half, d.unsqueeze(-1) * q, zero, {}


def _legacy_asym(wg: Tensor, vg: Tensor | float, t: GGMLType, min_scale: Tensor | None, max_scale: Tensor | None):
    """q4_1 / q5_1: the block's own min and max (no zero clamp), codes = trunc((w - min) / d + 0.5)."""
    top = 2**t.bits - 1
    wmin, wmax = _range(wg, min_scale, max_scale, clamp_zero=False)
    d32 = (wmax - wmin) / top
    inv = torch.where(d32 == 0, torch.zeros_like(d32), 1 / _safe(d32)).unsqueeze(-1)
    x = (wg - wmin.unsqueeze(-1)) * inv + vg
    q = _ste(x, torch.trunc(x + 0.5)).clamp(0, top)
    d, m = fp16_ste(d32), fp16_ste(wmin)
    return d, q, d.unsqueeze(-1) * q + m.unsqueeze(-1), None, {"min": m.detach().half()}


def _iq4_nl(wg: Tensor, vg: Tensor | float, min_scale: Tensor | None, max_scale: Tensor | None):
    """iq4_nl: nearest of 16 fixed levels; d from the largest-magnitude weight, then one
    least-squares refit of d to the chosen levels (cheap and never worse on the block)."""
    grid = torch.tensor(IQ4_NL_GRID, dtype=torch.float32, device=wg.device)
    wmin, wmax = _range(wg, min_scale, max_scale, clamp_zero=True)
    d = torch.where(wmin.abs() >= wmax.abs(), wmin, wmax) / grid[0]

    def nearest(d_: Tensor) -> Tensor:
        x = wg / _safe(d_).unsqueeze(-1) + vg
        return (x.unsqueeze(-1) - grid).abs().argmin(dim=-1)

    idx = nearest(d)
    lv = grid[idx]
    fit = (wg * lv).sum(-1) / (lv * lv).sum(-1).clamp(min=1e-12)
    d = fp16_ste(torch.where(d == 0, d, fit.detach() + (d - d.detach())))
    idx = nearest(d)
    x = wg / _safe(d).unsqueeze(-1) + vg
    level = _ste(x, grid[idx])
    return d, idx.to(torch.float32), d.unsqueeze(-1) * level, None, {}

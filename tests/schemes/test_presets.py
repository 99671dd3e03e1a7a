"""get_scheme parsing (names, aliases, dicts, overrides) and a qdq check of every preset."""
from __future__ import annotations

import pytest
import torch

from ar_schemes import PRESETS, QuantScheme, SchemeError, get_scheme, preset_names, qdq, quantize, scale_shape
from ar_schemes.dtypes.minifloat import E2M1, E4M3, ulp

from .reference import ungroup64

# GGUF presets (int_dq k-quants, int_ggml legacy blocks) are tested with dtypes/gguf.py by their owner
OWN = [n for n, s in PRESETS.items() if s.data_type not in ("int_dq", "int_ggml")]


# ---- parsing -------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,name", [
    ("W4A16", "W4A16"), ("w4a16", "W4A16"), (" W4a16 ", "W4A16"), ("mxfp4_rceil", "MXFP4_RCEIL"),
    ("nvfp4", "NVFP4"), ("W8A8", "INT8"), ("int8_w8a8", "INT8"), ("w16a16", "BF16"), ("fp8", "FP8_STATIC"),
    ("FP8_dynamic", "FP8_BLOCK"), ("gguf:q4_k_m", "GGUF:Q4_K_M"), ("q4_k_m", "GGUF:Q4_K_M"),
    ("GGUF_Q2_K_S", "GGUF:Q2_K_S"), ("Q8_0", "GGUF:Q8_0"),
])
def test_names_are_case_insensitive_with_aliases(spec, name):
    assert get_scheme(spec) == PRESETS[name]


def test_overrides_and_dicts():
    assert get_scheme("W4A16", bits=3) == PRESETS["W3A16"]
    assert get_scheme("W4A16", group_size=64) == PRESETS["W4A16G64"]
    assert get_scheme("W4A16", bits=None) == PRESETS["W4A16"]  # unset overrides are ignored
    assert get_scheme({"scheme": "w4a16", "bits": 3}) == PRESETS["W3A16"]
    assert get_scheme({"scheme": "W4A16"}, bits=2, group_size=32) == PRESETS["W2A16G32"]
    assert get_scheme({"bits": 8, "group_size": [128, 128], "data_type": "fp"}).group_size == (128, 128)
    assert get_scheme({}) == QuantScheme()
    s = QuantScheme(bits=5, group_size=32, sym=False)
    assert get_scheme(s) is s and get_scheme(s, sym=True) == QuantScheme(bits=5, group_size=32)


def test_unknown_name_lists_the_presets():
    with pytest.raises(SchemeError) as e:
        get_scheme("W4A17")
    msg = str(e.value)
    assert "unknown scheme 'W4A17'" in msg and "valid choices:" in msg
    assert all(n in msg for n in ("W4A16", "MXFP4", "NVFP4", "FP8_BLOCK"))


@pytest.mark.parametrize("spec,kw,match", [
    ("W4A16", dict(bitz=3), r"unknown scheme field\(s\) \['bitz'\]; valid fields: \[.*'bits'"),
    ({"scheme": "W4A16", "grp": 32}, {}, r"unknown scheme field\(s\) \['grp'\]"),
    ("W4A16", dict(bits=9), r"bits=9 is not valid for data_type 'int'; valid bits"),
    ("MXFP4", dict(bits=3), r"valid bits: \(4, 8\)"),
    ("W4A16", dict(data_type="int4"), r"unknown data_type 'int4'; valid choices"),
    ({"scheme": "nope"}, {}, r"unknown scheme 'nope'"),
    (4, {}, r"preset name, a dict or a QuantScheme, got int"),
])
def test_bad_specs_raise_scheme_errors(spec, kw, match):
    with pytest.raises(SchemeError, match=match):
        get_scheme(spec, **kw)


def test_preset_names_lists_every_preset():
    assert preset_names() == list(PRESETS)


# ---- qdq of every preset -------------------------------------------------------------------------
ELEMENT = {("mx_fp", 4): E2M1, ("mx_fp_rceil", 4): E2M1, ("mx_fp", 8): E4M3, ("mx_fp_rceil", 8): E4M3,
           ("nv_fp", 4): E2M1, ("fp", 8): E4M3}


def _expand(t: torch.Tensor, shape, group) -> torch.Tensor:
    """Per-group (G0, G1) -> per-element (out, in), through the test's own ungrouping."""
    if group == 0:
        return t.reshape(1, 1).expand(shape).double()
    n = shape[1] if group == -1 else (group[0] * group[1] if isinstance(group, tuple) else group)
    return ungroup64(t.double().unsqueeze(-1).expand(*t.shape, n), shape, group)


def _grid(w: torch.Tensor, s: QuantScheme, r) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per element: (representable low end, high end, local step) of the grid qdq rounds to."""
    shape = tuple(w.shape)
    scale = _expand(r.scale, shape, s.group_size)
    if s.data_type == "int":
        zero = _expand(r.zero, shape, s.group_size)
        a, b = -zero * scale, (2**s.bits - 1 - zero) * scale
        return torch.minimum(a, b), torch.maximum(a, b), scale.abs()
    fmt = ELEMENT[(s.data_type, s.bits)]
    x = (w.double() / scale).float()
    return -fmt.max * scale, fmt.max * scale, ulp(x, fmt).double() * scale


def _weight(out: int, inp: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out, inp, generator=g) * 0.02


@pytest.mark.parametrize("name", OWN)
def test_qdq_error_is_at_most_half_a_step(name):
    s = PRESETS[name]
    w = _weight(6, 256)
    r = quantize(w, s)
    assert r.dequant.shape == w.shape and r.dequant.dtype == torch.float32
    assert torch.equal(qdq(w, s), r.dequant)
    if not s.is_quantized:
        assert torch.equal(r.dequant, w)
        return
    assert r.codes.shape == w.shape and tuple(r.scale.shape) == scale_shape(tuple(w.shape), s)
    lo, hi, step = _grid(w, s, r)
    w64, err = w.double(), (r.dequant.double() - w.double()).abs()
    inside = (w64 >= lo) & (w64 <= hi)
    assert inside.float().mean() > 0.6  # clipping is the exception (2-bit full range clips most)
    tol = 1e-6 * w64.abs() + 1e-12
    assert torch.all(err[inside] <= step[inside] / 2 + tol[inside])
    # outside the range an element lands exactly on the nearer end (saturation)
    end = torch.where(w64 > hi, hi, lo)
    assert torch.all((r.dequant.double() - end)[~inside].abs() <= tol[~inside])


@pytest.mark.parametrize("name", OWN)
def test_non_multiple_in_features_are_zero_padded(name):
    """A (5, 40) weight quantizes as its zero-padded version does, cropped back."""
    s = PRESETS[name]
    w = _weight(5, 40, seed=1)
    g = s.group_size
    rows, cols = (g if isinstance(g, tuple) else (1, g if g > 0 else 1))
    padded = torch.nn.functional.pad(w, (0, (-40) % cols, 0, (-5) % rows))
    r, rp = quantize(w, s), quantize(padded, s)
    assert r.dequant.shape == (5, 40)
    assert torch.equal(r.dequant, rp.dequant[:5, :40])
    if s.is_quantized:
        assert torch.equal(r.codes.float(), rp.codes[:5, :40].float())
        assert torch.equal(r.scale, rp.scale)

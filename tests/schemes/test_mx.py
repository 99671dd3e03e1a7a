"""MXFP4 / MXFP8 (floor and RCEIL shared exponents) against the float64 reference."""
from __future__ import annotations

import pytest
import torch

from ar_schemes import QuantScheme, get_quantizer, quantize, scale_shape

from .reference import E2M1_MAGS, e4m3_all_values, mx_ref

CASES = [(4, "mx_fp"), (4, "mx_fp_rceil"), (8, "mx_fp"), (8, "mx_fp_rceil")]


def _scheme(bits, dt, group=32):
    return QuantScheme(bits=bits, group_size=group, data_type=dt)


def _w(out=4, inp=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    # spread magnitudes over several binades so many exponents are exercised
    return torch.randn(out, inp, generator=g) * torch.logspace(-3, 1, out).unsqueeze(1)


@pytest.mark.parametrize("bits,dt", CASES)
def test_matches_float64_reference(bits, dt):
    w = _w(seed=bits)
    r = quantize(w, _scheme(bits, dt))
    dq, q, scale, e = mx_ref(w, bits, dt == "mx_fp_rceil")
    assert torch.equal(r.dequant.double(), dq)
    assert torch.equal(r.scale.double(), scale)
    assert torch.equal(r.extra["scale_e8m0"].long(), (e + 127).long())
    codes = get_quantizer(dt).dequantize(r.codes, torch.ones_like(r.scale), None, _scheme(bits, dt))
    assert torch.equal(codes.double(), q)  # element values behind the codes


@pytest.mark.parametrize("bits,dt", CASES)
def test_reference_with_learnables(bits, dt):
    w = _w(seed=7)
    s = _scheme(bits, dt)
    g = torch.Generator().manual_seed(2)
    v = (torch.rand(w.shape, generator=g) - 0.5) * 0.9
    ss = scale_shape(tuple(w.shape), s)
    mn, mx = 0.5 + 0.5 * torch.rand(ss, generator=g), 0.5 + 0.5 * torch.rand(ss, generator=g)
    r = quantize(w, s, v, mn, mx)
    dq, _, scale, _ = mx_ref(w, bits, dt == "mx_fp_rceil", v, mn, mx)
    assert torch.equal(r.scale.double(), scale)
    assert torch.equal(r.dequant.double(), dq)


def test_shared_exponent_is_floor_log2_amax_minus_emax():
    # amax 5 -> floor(log2 5) = 2, minus emax(E2M1) = 2 -> 2^0; amax 448 (E4M3) -> 2^(8-8)
    w = torch.zeros(2, 32)
    w[0, 3], w[1, 3] = 5.0, -0.75
    r = quantize(w, _scheme(4, "mx_fp"))
    assert r.scale.flatten().tolist() == [1.0, 2.0**-3]
    assert r.extra["scale_e8m0"].flatten().tolist() == [127, 124]
    w[0, 3] = 448.0
    assert quantize(w, _scheme(8, "mx_fp")).scale[0, 0] == 1.0


def test_floor_clips_and_rceil_does_not():
    w = torch.full((1, 32), 0.1)
    w[0, 0] = 7.5  # floor: scale 1, 7.5 clips to 6; rceil: ceil(log2(7.5/6)) = 1, scale 2
    floor, rceil = quantize(w, _scheme(4, "mx_fp")), quantize(w, _scheme(4, "mx_fp_rceil"))
    assert floor.dequant[0, 0] == 6.0 and floor.scale.item() == 1.0
    assert rceil.dequant[0, 0] == 8.0 and rceil.scale.item() == 2.0
    w = _w(8, 64, seed=5)
    for bits, fmax in ((4, 6.0), (8, 448.0)):
        r = quantize(w, _scheme(bits, "mx_fp_rceil"))
        amax = w.reshape(8, 2, 32).abs().amax(-1)
        assert torch.all(amax <= fmax * r.scale)  # nothing clips
        assert torch.all(amax > fmax * r.scale / 2)  # and the scale is the smallest such power of two


@pytest.mark.parametrize("dt", ["mx_fp", "mx_fp_rceil"])
def test_every_e2m1_value_round_trips(dt):
    vals = torch.tensor(E2M1_MAGS[1:] + [-m for m in E2M1_MAGS])  # 15 values, +-0 once each
    row = torch.cat([vals, torch.full((32 - vals.numel(),), 6.0)]).reshape(1, 32)
    w = torch.cat([row, row.flip(1), row * 2.0**-5])  # scales 1, 1 and 2^-5
    r = quantize(w, _scheme(4, dt))
    assert torch.equal(r.dequant, w)
    mags = torch.tensor(E2M1_MAGS)
    index = (w.abs().unsqueeze(-1) / r.scale.unsqueeze(-1) == mags).to(torch.int64).argmax(-1)
    assert torch.equal(r.codes.long(), ((w < 0).long() << 3) | index)
    back = get_quantizer(dt).dequantize(r.codes, r.scale, None, _scheme(4, dt), extra=r.extra)
    assert torch.equal(back, w)


@pytest.mark.parametrize("dt", ["mx_fp", "mx_fp_rceil"])
def test_every_e4m3_value_round_trips(dt):
    vals = e4m3_all_values().float()  # 254 values
    n = 32 * 9
    flat = torch.cat([vals, torch.zeros(n - vals.numel())]).reshape(9, 32)
    flat[:, 0] = 448.0  # every group has amax 448 -> scale 1 for both variants
    r = quantize(flat, _scheme(8, dt))
    assert torch.all(r.scale == 1.0)
    assert torch.equal(r.dequant, flat)
    assert r.codes.dtype == torch.float8_e4m3fn
    assert torch.equal(r.codes.float(), flat)


@pytest.mark.parametrize("bits,dt", CASES)
def test_dequantize_matches_quantize_and_uses_e8m0(bits, dt):
    w = _w(3, 80)
    s = _scheme(bits, dt)
    r = quantize(w, s)
    q = get_quantizer(dt)
    assert torch.equal(q.dequantize(r.codes, r.scale, None, s), r.dequant)
    assert torch.equal(q.dequantize(r.codes, torch.zeros_like(r.scale), None, s, extra=r.extra), r.dequant)


def test_zero_group_gets_the_smallest_exponent():
    w = torch.zeros(1, 64)
    w[0, 40] = 1.0
    r = quantize(w, _scheme(4, "mx_fp"))
    assert r.extra["scale_e8m0"].tolist() == [[0, 125]]
    assert torch.equal(r.dequant, w)

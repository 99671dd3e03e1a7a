"""FP8 (E4M3) per tensor, per channel and 128x128 blocks against the float64 reference."""
from __future__ import annotations

import pytest
import torch

from ar_schemes import QuantScheme, get_quantizer, quantize, scale_shape

from .reference import e4m3_all_values, fp8_ref

GROUPS = [0, -1, (128, 128), (4, 16), 32]


def _w(out=6, inp=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out, inp, generator=g) * torch.logspace(-3, 0, out).unsqueeze(1)


def _scheme(group):
    return QuantScheme(bits=8, group_size=group, data_type="fp")


@pytest.mark.parametrize("group", GROUPS)
def test_matches_float64_reference(group):
    w = _w()
    r = quantize(w, _scheme(group))
    dq, q, scale = fp8_ref(w, group)
    assert r.scale.shape == scale_shape(tuple(w.shape), _scheme(group)) == scale.shape
    assert torch.equal(r.scale, scale.float())  # correctly rounded amax / 448
    assert r.codes.dtype == torch.float8_e4m3fn
    assert torch.equal(r.codes.double(), q)
    torch.testing.assert_close(r.dequant.double(), dq, rtol=1e-6, atol=0)


@pytest.mark.parametrize("group", GROUPS)
def test_reference_with_learnables(group):
    w = _w(seed=2)
    s = _scheme(group)
    g = torch.Generator().manual_seed(5)
    v = (torch.rand(w.shape, generator=g) - 0.5) * 0.9
    ss = scale_shape(tuple(w.shape), s)
    mn, mx = 0.5 + 0.5 * torch.rand(ss, generator=g), 0.5 + 0.5 * torch.rand(ss, generator=g)
    r = quantize(w, s, v, mn, mx)
    dq, q, _ = fp8_ref(w, group, v, mn, mx)
    assert torch.equal(r.codes.double(), q)
    torch.testing.assert_close(r.dequant.double(), dq, rtol=1e-6, atol=0)


def test_codes_agree_with_torch_float8_cast():
    w = _w(4, 256)
    r = quantize(w, _scheme(-1))
    assert torch.equal(r.codes, (w / r.scale).to(torch.float8_e4m3fn))


@pytest.mark.parametrize("group", [0, -1, (128, 128)])
def test_every_e4m3_value_round_trips(group):
    vals = e4m3_all_values().float()
    w = torch.cat([vals, torch.zeros(2)]).reshape(2, 128)
    w[:, 0] = 448.0  # amax 448 in every row / block: scale exactly 1
    r = quantize(w, _scheme(group))
    assert torch.all(r.scale == 1.0)
    assert torch.equal(r.dequant, w) and torch.equal(r.codes.float(), w)


def test_block_scales_cover_partial_blocks():
    w = _w(130, 200, seed=1)
    r = quantize(w, _scheme((128, 128)))
    assert r.scale.shape == (2, 2)
    assert r.scale[1, 1].item() == pytest.approx(w[128:, 128:].abs().max().item() / 448, rel=1e-6)
    q = get_quantizer("fp")
    assert torch.equal(q.dequantize(r.codes, r.scale, None, _scheme((128, 128))), r.dequant)

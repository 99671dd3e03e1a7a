"""NVFP4 against the float64 reference: E4M3 group scales, fp32 global scale, E2M1 codes."""
from __future__ import annotations

import pytest
import torch

from ar_schemes import SchemeError, get_quantizer, get_scheme, quantize, scale_shape
from ar_schemes.scheme import QuantScheme

from .reference import E2M1_MAGS, nv_ref

NVFP4 = get_scheme("NVFP4")


def _w(out=4, inp=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out, inp, generator=g) * torch.logspace(-2, 0, out).unsqueeze(1)


def test_matches_float64_reference():
    w = _w(6, 80)
    r = quantize(w, NVFP4)
    dq, q, scale, s8, gscale = nv_ref(w)
    assert r.global_scale.shape == (1,)
    assert torch.equal(r.global_scale, gscale.reshape(1).float())  # correctly rounded 2688 / amax
    assert torch.equal(r.extra["scale_e4m3"].double(), s8)
    assert r.extra["scale_e4m3"].dtype == torch.float8_e4m3fn
    torch.testing.assert_close(r.scale.double(), scale, rtol=1e-6, atol=0)
    elements = get_quantizer("nv_fp").dequantize(r.codes, torch.ones_like(r.scale), None, NVFP4)
    assert torch.equal(elements.double(), q)
    torch.testing.assert_close(r.dequant.double(), dq, rtol=1e-6, atol=0)


def test_reference_with_learnables():
    w = _w(seed=4)
    g = torch.Generator().manual_seed(3)
    v = (torch.rand(w.shape, generator=g) - 0.5) * 0.9
    ss = scale_shape(tuple(w.shape), NVFP4)
    mn, mx = 0.5 + 0.5 * torch.rand(ss, generator=g), 0.5 + 0.5 * torch.rand(ss, generator=g)
    r = quantize(w, NVFP4, v, mn, mx)
    dq, q, *_ = nv_ref(w, v, mn, mx)
    elements = get_quantizer("nv_fp").dequantize(r.codes, torch.ones_like(r.scale), None, NVFP4)
    assert torch.equal(elements.double(), q)
    torch.testing.assert_close(r.dequant.double(), dq, rtol=1e-6, atol=0)


def test_global_scale_maps_tensor_amax_to_448_times_6():
    w = _w()
    r = quantize(w, NVFP4)
    assert r.global_scale.item() == pytest.approx(448 * 6 / w.abs().max().item(), rel=1e-7)
    # the group holding the tensor's amax gets the largest E4M3 scale
    assert r.extra["scale_e4m3"].float().max().item() == 448.0


def test_every_e2m1_value_round_trips():
    vals = torch.tensor(E2M1_MAGS[1:] + [-m for m in E2M1_MAGS])  # 15 values
    w = torch.cat([vals, torch.tensor([6.0])]).reshape(1, 16)
    w = torch.cat([w, -w.flip(1)])  # every group has amax 6 -> scale_e4m3 448, multiplier exactly 1
    r = quantize(w, NVFP4)
    assert torch.all(r.scale == 1.0)
    assert torch.equal(r.dequant, w)
    back = get_quantizer("nv_fp").dequantize(r.codes, r.scale, None, NVFP4, r.global_scale, r.extra)
    assert torch.equal(back, w)


def test_dequantize_matches_quantize():
    w = _w(3, 72)
    r = quantize(w, NVFP4)
    q = get_quantizer("nv_fp")
    assert torch.equal(q.dequantize(r.codes, r.scale, None, NVFP4, r.global_scale, r.extra), r.dequant)
    assert torch.equal(q.dequantize(r.codes, r.scale, None, NVFP4), r.dequant)


def test_tiny_groups_and_zero_tensor():
    w = torch.zeros(2, 32)
    r = quantize(w, NVFP4)
    assert torch.equal(r.dequant, w) and r.global_scale.item() == 1.0
    w[0, 0], w[1, 20] = 1.0, 1e-9  # second group's E4M3 scale underflows to 0: it dequantizes to 0
    r = quantize(w, NVFP4)
    assert r.dequant[0, 0] == 1.0 and r.dequant[1, 20] == 0.0
    assert not torch.isnan(r.dequant).any() and torch.all(r.codes[1] == 0)


def test_invalid_group_is_a_clear_error():
    with pytest.raises(SchemeError, match="group_size"):
        quantize(_w(), QuantScheme(bits=4, group_size=(16, 16), data_type="nv_fp"))

"""dtypes/int.py against the float64 reference: asym and full-range sym, codes and round trips."""
from __future__ import annotations

import pytest
import torch

from ar_schemes import QuantScheme, SchemeError, get_quantizer, quantize, scale_shape

from .reference import int_ref

GROUPS = [32, 128, -1, 0, (4, 32)]


def _w(out=6, inp=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out, inp, generator=g) * 0.05


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("sym", [True, False])
@pytest.mark.parametrize("group", GROUPS)
def test_matches_float64_reference(bits, sym, group):
    w = _w(seed=bits)
    scheme = QuantScheme(bits=bits, group_size=group, sym=sym)
    r = quantize(w, scheme)
    dq, q, scale, zero = int_ref(w, bits, sym, group)
    assert torch.equal(r.codes.double(), q)
    assert torch.equal(r.zero.double(), zero)
    assert torch.equal(r.scale.double(), scale)
    torch.testing.assert_close(r.dequant.double(), dq, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("sym", [True, False])
def test_reference_with_learnables(sym):
    w = _w(seed=3)
    scheme = QuantScheme(bits=4, group_size=32, sym=sym)
    g = torch.Generator().manual_seed(1)
    v = (torch.rand(w.shape, generator=g) - 0.5) * 0.9
    ss = scale_shape(tuple(w.shape), scheme)
    mn, mx = 0.7 + 0.3 * torch.rand(ss, generator=g), 0.7 + 0.3 * torch.rand(ss, generator=g)
    r = quantize(w, scheme, v, mn, mx)
    dq, q, scale, zero = int_ref(w, 4, sym, 32, v, mn, mx)
    assert torch.equal(r.codes.double(), q)
    torch.testing.assert_close(r.dequant.double(), dq, rtol=1e-6, atol=1e-9)


def test_sym_is_full_range_with_signed_scale():
    # largest magnitude positive -> negative scale, that end maps to code 0 (= -2^(b-1))
    w = torch.tensor([[0.8, -0.2] + [0.1] * 30, [-0.8, 0.2] + [0.1] * 30])
    r = quantize(w, QuantScheme(bits=4, group_size=32, sym=True))
    assert r.scale[0, 0] < 0 < r.scale[1, 0]
    assert r.codes[0, 0] == 0 and r.codes[1, 0] == 0
    assert torch.all(r.zero == 8)
    torch.testing.assert_close(r.dequant[:, 0], torch.tensor([0.8, -0.8]), rtol=1e-3, atol=0)


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("sym", [True, False])
def test_every_code_round_trips(bits, sym):
    """A group holding every code 0..2^b-1 on an fp16-exact scale comes back code for code."""
    n = 2**bits
    codes = torch.arange(n, dtype=torch.float32)
    scale = 0.0625 * 1.25
    zeros = [2 ** (bits - 1)] if sym else [0, 1, n // 3, n - 1]
    for z in zeros:
        w = (scale * (codes - z)).reshape(1, n)
        for sign in ([1.0, -1.0] if sym else [1.0]):
            # negated, the largest magnitude is the positive end: the scale turns negative, codes stay
            r = quantize(sign * w, QuantScheme(bits=bits, group_size=-1, sym=sym))
            assert torch.equal(r.codes.reshape(-1), codes), (z, sign)
            assert torch.equal(r.dequant, sign * w)
            assert r.scale.item() == sign * scale


@pytest.mark.parametrize("sym", [True, False])
def test_dequantize_matches_quantize(sym):
    w = _w(5, 70)
    scheme = QuantScheme(bits=3, group_size=32, sym=sym)
    r = quantize(w, scheme)
    back = get_quantizer("int").dequantize(r.codes, r.scale, r.zero, scheme)
    assert torch.equal(back, r.dequant)


def test_dequantize_without_zero_is_a_clear_error():
    scheme = QuantScheme(bits=4, group_size=32)
    r = quantize(_w(), scheme)
    with pytest.raises(SchemeError, match="zero"):
        get_quantizer("int").dequantize(r.codes, r.scale, None, scheme)


def test_all_zero_group_stays_zero():
    w = torch.zeros(2, 64)
    for sym in (True, False):
        r = quantize(w, QuantScheme(bits=4, group_size=32, sym=sym))
        assert torch.equal(r.dequant, w)
        assert torch.all(r.scale.abs() > 0)

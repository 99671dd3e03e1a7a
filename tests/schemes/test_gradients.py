"""Backward through every quantizer reaches v, min_scale and max_scale (straight-through rounding)."""
from __future__ import annotations

import pytest
import torch

from ar_schemes import QuantScheme, quantize, scale_shape

SCHEMES = {
    "int_sym": QuantScheme(bits=4, group_size=32, sym=True),
    "int_asym": QuantScheme(bits=3, group_size=32, sym=False),
    "int_per_channel": QuantScheme(bits=8, group_size=-1),
    "mxfp4": QuantScheme(bits=4, group_size=32, data_type="mx_fp"),
    "mxfp4_rceil": QuantScheme(bits=4, group_size=32, data_type="mx_fp_rceil"),
    "mxfp8": QuantScheme(bits=8, group_size=32, data_type="mx_fp"),
    "mxfp8_rceil": QuantScheme(bits=8, group_size=32, data_type="mx_fp_rceil"),
    "nvfp4": QuantScheme(bits=4, group_size=16, data_type="nv_fp"),
    "fp8_tensor": QuantScheme(bits=8, group_size=0, data_type="fp"),
    "fp8_channel": QuantScheme(bits=8, group_size=-1, data_type="fp"),
    "fp8_block": QuantScheme(bits=8, group_size=(4, 32), data_type="fp"),
}


def _grads(w: torch.Tensor, s: QuantScheme):
    ss = scale_shape(tuple(w.shape), s)
    v = torch.zeros_like(w, requires_grad=True)
    mn = torch.ones(ss, requires_grad=True)
    mx = torch.ones(ss, requires_grad=True)
    r = quantize(w, s, v, mn, mx)
    probe = torch.randn(w.shape, generator=torch.Generator().manual_seed(1))
    (r.dequant * probe).sum().backward()
    return v.grad, mn.grad, mx.grad


def _weight(sign: float) -> torch.Tensor:
    """Every group of 16 holds a large outlier of the given sign, so that end sets the range."""
    w = torch.randn(8, 64, generator=torch.Generator().manual_seed(0)) * 0.1
    w[:, ::16] = 0.5 * sign
    return w


@pytest.mark.parametrize("name", list(SCHEMES))
def test_gradients_reach_every_learnable(name):
    s = SCHEMES[name]
    gv, _, gmax = _grads(_weight(+1.0), s)
    _, gmin, _ = _grads(_weight(-1.0), s)
    for g in (gv, gmin, gmax):
        assert g is not None and torch.isfinite(g).all()
    assert gv.abs().sum() > 0 and gmin.abs().sum() > 0 and gmax.abs().sum() > 0


@pytest.mark.parametrize("name", list(SCHEMES))
@pytest.mark.parametrize("mult", [0.0, 1e-38, 1e-30, 1e-16])
def test_vanishing_clip_multipliers_stay_finite(name, mult):
    """min_scale = max_scale -> 0 (sign-SGD can leave 1e-16 residues) gives no NaN or inf."""
    s = SCHEMES[name]
    w = (_weight(1.0) * 100).requires_grad_(True)
    ss = scale_shape(tuple(w.shape), s)
    mn, mx = torch.full(ss, mult, requires_grad=True), torch.full(ss, mult, requires_grad=True)
    v = torch.zeros_like(w, requires_grad=True)
    r = quantize(w, s, v, mn, mx)
    r.dequant.sum().backward()
    for t in (r.dequant, mn.grad, mx.grad, v.grad, w.grad):
        assert torch.isfinite(t).all()

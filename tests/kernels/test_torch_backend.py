"""The torch backend is the reference: bit-exact with the fake-quant product in every layout."""
from __future__ import annotations

import pytest
import torch

from ar_kernels import TorchIntLinear

from ._layers import build, random_int_layer, reference

CASES = [(bits, group, sym, packing)
         for bits in (2, 3, 4, 8) for group in (32, 128, -1) for sym in (True, False)
         for packing in ("gptq", "auto_round")] + [(4, g, s, "awq") for g in (32, 128) for s in (True, False)]


@pytest.mark.parametrize("bits,group,sym,packing", CASES)
def test_torch_backend_exact(bits: int, group: int, sym: bool, packing: str) -> None:
    layer = random_int_layer(48, 256, bits, group, sym, packing, dtype=torch.bfloat16, bias=True)
    q = build(layer, TorchIntLinear)
    x = torch.randn(3, 5, 256).to(torch.bfloat16)
    assert torch.equal(q(x), reference(x, layer))


@pytest.mark.parametrize("bits", [5, 6, 7])
def test_odd_bits(bits: int) -> None:
    layer = random_int_layer(16, 128, bits, 64, False, "auto_round", dtype=torch.float32)
    q = build(layer, TorchIntLinear)
    x = torch.randn(2, 128)
    assert torch.equal(q(x), reference(x, layer))


def test_g_idx_reorders_groups() -> None:
    """An act-order GPTQ layer: channel i uses group g_idx[i], not i // group_size."""
    layer = random_int_layer(16, 128, 4, 32, True, "gptq", dtype=torch.float32)
    perm = torch.randperm(128, generator=torch.Generator().manual_seed(1))
    g_idx = (perm // 32).to(torch.int32)
    layer["desc"] = type(layer["desc"])(**{**layer["desc"].__dict__, "g_idx": True})
    layer["state_dict"]["g_idx"] = g_idx
    q = build(layer, TorchIntLinear)
    from ar_kernels.packing import gptq
    codes = gptq.unpack_qweight(layer["state_dict"]["qweight"], 4, 128).float()
    scale = layer["state_dict"]["scales"].t().float()  # (out, ngroups)
    w = (codes - 8) * scale[:, g_idx.long()]
    x = torch.randn(2, 128)
    assert torch.allclose(q(x), x @ w.t(), atol=1e-5, rtol=1e-5)

"""Triton kernels against the torch backend: relative error < 1e-3 in fp16 and bf16.

On CPU these run under ``TRITON_INTERPRET=1`` (set by this folder's conftest before triton is
imported), with tiny shapes: interpretation is slow. On a GPU the same cases run on CUDA, plus
larger shapes (``-m gpu``); benchmarks/kernel_bench.py covers speed.
"""
from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from ar_kernels import TorchIntLinear, TritonIntLinear

from ._layers import build, random_int_layer, rel_err

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
CUDA = torch.cuda.is_available()


@pytest.fixture(autouse=True)
def _interpret() -> None:
    if not CUDA and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no GPU and triton was imported before TRITON_INTERPRET=1 could be set; "
                    "run with TRITON_INTERPRET=1")


def _compare(bits: int, group: int, sym: bool, packing: str, dtype: torch.dtype, rows: int,
             out: int = 64, inp: int = 128, **attrs: object) -> float:
    dev = "cuda" if CUDA else "cpu"
    layer = random_int_layer(out, inp, bits, group, sym, packing, dtype=dtype, bias=True, seed=bits + rows)
    ref = build(layer, TorchIntLinear, dev)
    tri = build(layer, TritonIntLinear, dev)
    for k, v in attrs.items():
        setattr(tri, k, v)
    x = torch.randn(rows, inp, generator=torch.Generator().manual_seed(rows)).to(dev, dtype)
    return rel_err(tri(x), ref(x))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("bits,group,sym,packing", [
    (4, 32, True, "gptq"), (4, 64, False, "awq"), (2, 32, False, "auto_round"), (8, -1, True, "gptq"),
])
@pytest.mark.parametrize("rows", [1, 3, 17])  # GEMV (decode) for 1 row, GEMM (prefill) above
def test_triton_matches_torch(bits: int, group: int, sym: bool, packing: str, dtype: torch.dtype,
                              rows: int) -> None:
    assert _compare(bits, group, sym, packing, dtype, rows) < 1e-3


def test_triton_dequant_path() -> None:
    """Huge batches may dequantize once and call the BLAS: same weight bits as the torch backend."""
    assert _compare(4, 32, True, "gptq", torch.float16, 20, dequant_min_rows=8) < 1e-3


def test_triton_ragged_out_features() -> None:
    """out_features not a multiple of the tile: masked columns."""
    assert _compare(4, 32, False, "auto_round", torch.bfloat16, 2, out=40) < 1e-3
    assert _compare(4, 32, False, "auto_round", torch.bfloat16, 18, out=40) < 1e-3


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("rows", [1, 4, 64, 300])
def test_triton_cuda_shapes(bits: int, rows: int) -> None:
    for dtype in (torch.float16, torch.bfloat16):
        for group, sym, packing in ((128, True, "gptq"), (32, False, "auto_round"), (-1, True, "gptq")):
            assert _compare(bits, group, sym, packing, dtype, rows, out=1000, inp=2048) < 1e-3


def test_triton_gemv_several_rows() -> None:
    """The split-K GEMV runs one program column per row when allowed more than one row."""
    assert _compare(4, 32, False, "awq", torch.bfloat16, 3, gemv_max_rows=4) < 1e-3


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_triton_fast_gemv(bits: int) -> None:
    """The per-group-scale GEMV: exact in fp32, so within fp16 rounding of the torch backend."""
    assert _compare(bits, 32, False, "auto_round", torch.float16, 1, fast_gemv=True) < 1e-3
    assert _compare(bits, 64, True, "gptq", torch.bfloat16, 1, fast_gemv=True) < 4e-3

"""The ``cuda`` backend (NVRTC tensor-core GEMV) and ``tinygemm``: layouts on CPU, kernels on a GPU.

On CPU: the mma weight layout against its documented formula, the exactness of the bf16 scale
split over every fp16 scale, and the layers' torch paths (same repacked buffers) against the torch
backend bit for bit. With CUDA (``-m gpu``): the kernels against the torch backend (< 1e-3) and the
dequantization kernel bit for bit. benchmarks/kernel_bench.py covers speed.
"""
from __future__ import annotations

import os

import pytest
import torch

from ar_kernels import CudaIntLinear, TinygemmIntLinear, TorchIntLinear
from ar_kernels.backends._mma_layout import (
    gemv_params,
    pack_w4_mma,
    pad_columns,
    split_scale_bf16,
    unpack_w4_mma,
)
from ar_kernels.backends.cuda import (
    cuda_int4_dequant,
    cuda_int4_gemm,
    cuda_int4_gemv,
    gemm_ksplit,
    xsmem_bytes,
)

from ._layers import build, random_int_layer, rel_err

CUDA = torch.cuda.is_available()


@pytest.mark.parametrize("kchunk", [1, 2, 4])
def test_mma_layout_follows_its_formula(kchunk: int) -> None:
    k, n = 256, 40  # four k blocks, three tiles (the last one padded)
    codes = torch.randint(0, 16, (k, n), generator=torch.Generator().manual_seed(0), dtype=torch.int32)
    words = pack_w4_mma(codes, kchunk)
    p = kchunk
    assert words.shape == (4 // p, 3, p, 32, 4) and words.dtype == torch.int32
    for tile in range(3):
        for kb in range(4):
            for lane in range(32):
                g, c = divmod(lane, 4)
                for kk in range(4):
                    w = int(words[kb // p, tile, kb % p, lane, kk]) & 0xFFFFFFFF
                    for i in range(8):
                        col = 16 * tile + g + 8 * (i & 1)
                        row = 64 * kb + 16 * c + 4 * kk + 2 * ((i >> 1) & 1) + (i >> 2)
                        want = int(codes[row, col]) if col < n else 0
                        assert (w >> (4 * i)) & 0xF == want, (tile, kb, lane, kk, i)


def test_mma_layout_round_trip() -> None:
    codes = torch.randint(0, 16, (448, 72), generator=torch.Generator().manual_seed(1), dtype=torch.int32)
    for kchunk, shape in ((1, (7, 5, 1)), (4, (7, 5, 1))):  # K / 64 = 7: P divides it
        words = pack_w4_mma(codes, kchunk)
        assert words.shape[:3] == shape
        assert torch.equal(unpack_w4_mma(words, 448, 72), codes)
    for kchunk, shape in ((2, (2, 5, 2)), (8, (1, 5, 4))):
        words = pack_w4_mma(codes[:256], kchunk)
        assert words.shape[:3] == shape
        assert torch.equal(unpack_w4_mma(words, 256, 72), codes[:256])
    with pytest.raises(ValueError, match="multiple of 64"):
        pack_w4_mma(codes[:100])
    for bad in (0, 3):
        with pytest.raises(ValueError, match="power of 2"):
            pack_w4_mma(codes, bad)


def test_bf16_scale_split_is_exact_for_every_fp16_scale() -> None:
    """hi + lo == s, (q - z) * lo is a bf16 value, so fma(q - z, hi, (q - z) * lo) rounds (q - z) * s once."""
    bits = torch.arange(0, 0x7C00, dtype=torch.int32).to(torch.int16)  # every finite fp16 >= 0, subnormals too
    s = torch.cat([bits.view(torch.float16), -bits.view(torch.float16)])
    hi, lo = split_scale_bf16(s)
    assert torch.equal(hi.double() + lo.double(), s.double())
    d = torch.arange(-15, 16, dtype=torch.float64)[:, None]  # q - z for 4-bit codes and zero points
    c = d * lo.double()[None, :]
    assert torch.equal(c.to(torch.bfloat16).double(), c)
    assert torch.equal(d * hi.double()[None, :] + c, d * s.double()[None, :])


def _halves(words: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """int32 words (..., 8, W) -> (..., 16, W) values: the low halves are columns g, the high g + 8 (as the
    kernel's prmt 0x1010 / 0x3232 picks them)."""
    h = words.contiguous().view(torch.int16).view(dtype)  # (..., 8, 2W): low, high, low, high, ...
    h = h.unflatten(-1, (words.shape[-1], 2))  # (..., 8, W, 2)
    return torch.cat((h[..., 0], h[..., 1]), dim=-2)


@pytest.mark.parametrize("sym", [True, False])
def test_gemv_params_follow_their_formula(sym: bool) -> None:
    """Per (group, tile, g): bf16 [s_hi, s_lo(, -(128 + z), 0)], fp16 [s(, -(1024 + z))] for columns g, g + 8."""
    g = torch.Generator().manual_seed(2)
    ng, n = 3, 40
    scales = pad_columns((torch.rand(ng, n, generator=g) * 0.02 + 1e-4).half())
    zeros = pad_columns(torch.randint(0, 16, (ng, n), generator=g).half() if not sym else torch.full((ng, n), 8.0).half(),
                        value=8.0)
    want_s = scales.view(ng, 3, 16).float()
    want_z = zeros.view(ng, 3, 16).float()
    p = gemv_params(scales, zeros, True, sym)
    assert p.shape == (ng, 3, 8, 2 if sym else 4) and p.dtype == torch.int32
    v = _halves(p, torch.bfloat16).float()  # (ng, 3, 16, W)
    assert torch.equal(v[..., 0] + v[..., 1], want_s)  # s_hi + s_lo == s exactly
    assert torch.equal(v[..., 0], want_s.to(torch.bfloat16).float())
    if not sym:
        assert torch.equal(v[..., 2], -(128 + want_z)) and not v[..., 3].any()
    p = gemv_params(scales, zeros, False, sym)
    assert p.shape == (ng, 3, 8, 1 if sym else 2)
    v = _halves(p, torch.float16).float()
    assert torch.equal(v[..., 0], want_s)
    if not sym:
        assert torch.equal(v[..., 1], -(1024 + want_z))


CASES = [(128, True, "gptq"), (32, False, "auto_round"), (64, False, "awq"), (-1, True, "gptq"),
         (48, False, "gptq")]


@pytest.mark.parametrize("group,sym,packing", CASES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_cuda_layer_repacks_exactly(group: int, sym: bool, packing: str, dtype: torch.dtype) -> None:
    """post_init's repacked words, scales and zeros give the torch backend's weight and product bit for bit."""
    layer = random_int_layer(40, 192, 4, group, sym, packing, dtype=dtype, bias=True, seed=group + 7)
    ref, ours = build(layer, TorchIntLinear), build(layer, CudaIntLinear)
    assert ours.qweight.shape == (3, 3, 1, 32, 4) and ours.sym == sym  # k-block-major
    assert torch.equal(ours.dequantize(dtype), ref.dequantize(dtype))
    x = torch.randn(3, 192).to(dtype)
    assert torch.equal(ours(x), ref(x))


def test_cuda_layer_copies_and_pickles_without_its_launch_plans() -> None:
    """A layer that has launched (its plans hold ctypes handles, which cannot be copied) still deep-copies and
    pickles, the copy with no plans and the same product; a set attribute drops the plans."""
    import copy
    import ctypes
    import pickle
    layer = random_int_layer(40, 192, 4, 128, True, "gptq", dtype=torch.bfloat16, seed=5)
    ours = build(layer, CudaIntLinear)
    ours._plans[(1, torch.bfloat16)] = (ctypes.c_void_p(1),)  # what a GPU launch leaves there
    x = torch.randn(3, 192).to(torch.bfloat16)
    for twin in (copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        assert twin._plans == {} and torch.equal(twin(x), ours(x))
    assert ours._plans
    ours.gemv_ksplit = 8
    assert ours._plans == {}


def _compiled_graphs(module: torch.nn.Module, x: torch.Tensor, backend: str = "aot_eager") -> tuple:
    """``module(x)`` under ``torch.compile(fullgraph=True)`` and the FX graphs dynamo handed the backend."""
    from torch._dynamo.backends.registry import lookup_backend
    graphs = []

    def record(gm, inputs):  # type: ignore[no-untyped-def]
        graphs.append(gm)
        return lookup_backend(backend)(gm, inputs)
    torch._dynamo.reset()
    return torch.compile(module, fullgraph=True, backend=record)(x), graphs


def _ops_in(graphs: list) -> set:
    return {str(n.target) for g in graphs for n in g.graph.nodes if n.op == "call_function"}


def test_cuda_layer_compiles_to_one_graph_with_its_operators() -> None:
    """Under torch.compile the layer is one graph (no break at a Python launch) holding the GEMV operator for a few
    rows and the dequantization operator above, with the eager product bit for bit; both operators pass
    torch.library.opcheck (schema, fake tensors, autograd registration, AOT dispatch)."""
    layer = random_int_layer(40, 192, 4, 64, False, "auto_round", dtype=torch.bfloat16, bias=True, seed=3)
    ours = build(layer, CudaIntLinear)
    wide = build(random_int_layer(128, 192, 4, 64, False, "auto_round", dtype=torch.bfloat16, bias=True, seed=4),
                 CudaIntLinear)  # 128 columns: the GEMM serves 33-256 rows
    for module, rows, op in ((ours, 3, "cuda_int4_gemv"), (ours, 40, "cuda_int4_dequant"), (wide, 40, "cuda_int4_gemm"),
                             (wide, 300, "cuda_int4_dequant")):
        x = torch.randn(1, rows, 192).to(torch.bfloat16)
        out, graphs = _compiled_graphs(module, x)
        assert torch.equal(out, module(x)) and len(graphs) == 1 and f"ar_kernels.{op}.default" in _ops_in(graphs), rows
    x = torch.randn(2, 3, 192).to(torch.bfloat16)
    p = ours.gemv_params(torch.bfloat16)
    for op, args in ((cuda_int4_gemv, (x, ours.qweight, p, ours.scales, ours.zeros, ours.bias, 40, 64, False, 1, 4, 2,
                                       False)),
                     (cuda_int4_gemm, (x, ours.qweight, p, ours.scales, ours.zeros, ours.bias, 40, 64, False)),
                     (cuda_int4_dequant, (ours.qweight, ours.scales, ours.zeros, 192, 40, 64, False, torch.float16))):
        assert set(torch.library.opcheck(op, args).values()) == {"SUCCESS"}


def test_gemm_splits_k_until_the_blocks_fill_the_gpu() -> None:
    """K ranges double while (column blocks x row blocks x ranges) < 1.5 per SM, each range >= 8 64-k blocks, <= 8."""
    assert gemm_ksplit(112, 1, 64, 132) == 2  # 4096 -> 14336, <= 64 rows: 224 blocks
    assert gemm_ksplit(112, 2, 64, 132) == 1  # 128 rows
    assert [gemm_ksplit(32, r, 224, 132) for r in (1, 2, 4, 8)] == [8, 4, 2, 1]  # 14336 -> 4096
    assert gemm_ksplit(8, 1, 32, 132) == 4 and gemm_ksplit(8, 1, 8, 132) == 1  # short K keeps >= 8 blocks a range


def test_tinygemm_cpu_twin_repacks_and_folds_zeros() -> None:
    """tinygemm's offset = (8 - zero) * scale; its bf16 scales keep it ~2e-3 from the torch backend."""
    layer = random_int_layer(64, 256, 4, 64, False, "auto_round", dtype=torch.bfloat16, seed=3)
    ref, tg = build(layer, TorchIntLinear), build(layer, TinygemmIntLinear)
    w = layer["weight"]  # (out, in) exact fp32
    assert rel_err(tg.dequantize(torch.float32), w) < 4e-3
    x = torch.randn(5, 256).to(torch.bfloat16)
    assert rel_err(tg(x), ref(x)) < 5e-3


def test_dependent_launch_config_matches_the_driver_abi() -> None:
    """cuLaunchKernelEx's structs as cuda.h lays them out on 64-bit hosts: CUlaunchAttribute is an id, 4 bytes of
    padding and a 64-byte union; CUlaunchConfig six grid/block uints and the shared bytes, then the stream, the
    attributes pointer and their count on 8-byte bounds. The attribute is programmatic stream serialization (6)."""
    import ctypes

    from ar_kernels.backends._nvrtc import LaunchAttribute, LaunchConfig, dependent_launch_config
    assert ctypes.sizeof(LaunchAttribute) == 72 and LaunchAttribute.value.offset == 8
    assert ctypes.sizeof(LaunchConfig) == 56
    offsets = [getattr(LaunchConfig, f).offset for f in ("block", "shared", "stream", "attrs", "nattrs")]
    assert offsets == [12, 24, 32, 40, 48]
    cfg = dependent_launch_config()
    assert cfg.nattrs == 1 and cfg.attrs[0].id == 6 and cfg.attrs[0].value[0] == 1


# ---- on a GPU ---------------------------------------------------------------------------------


def _compare(cls: type, group: int, sym: bool, packing: str, dtype: torch.dtype, rows: int,
             out: int = 1000, inp: int = 2048, bias: bool = True) -> tuple[float, torch.nn.Module, torch.nn.Module]:
    layer = random_int_layer(out, inp, 4, group, sym, packing, dtype=dtype, bias=bias, seed=rows + group)
    ref, ours = build(layer, TorchIntLinear, "cuda"), build(layer, cls, "cuda")
    x = torch.randn(rows, inp, generator=torch.Generator().manual_seed(rows)).to("cuda", dtype)
    return rel_err(ours(x), ref(x)), ref, ours


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("group,sym,packing", CASES)
@pytest.mark.parametrize("rows", [1, 3, 8, 9, 16, 17, 32, 33, 300])
def test_cuda_kernels_match_torch(dtype: torch.dtype, group: int, sym: bool, packing: str, rows: int) -> None:
    err, ref, ours = _compare(CudaIntLinear, group, sym, packing, dtype, rows)
    assert err < 1e-3
    if rows == 1:
        assert torch.equal(ours.dequantize(dtype), ref.dequantize(dtype))


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("group,sym,packing", CASES)
@pytest.mark.parametrize("inp,rows", [(2048, 33), (2048, 100), (512, 64), (512, 256)])
def test_cuda_gemm_matches_torch(dtype: torch.dtype, group: int, sym: bool, packing: str, inp: int, rows: int) -> None:
    """33-256 rows on 384 columns: the GEMM, its K split in 4 ranges (2048 in) or not (512 in)."""
    err, _, ours = _compare(CudaIntLinear, group, sym, packing, dtype, rows, out=384, inp=inp)
    assert ours._gemm_serves(rows, dtype) and err < 1e-3


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_kernel_in_a_graph_and_strided_input() -> None:
    layer = random_int_layer(4096, 4096, 4, 128, True, "gptq", dtype=torch.bfloat16, seed=5)
    ref, ours = build(layer, TorchIntLinear, "cuda"), build(layer, CudaIntLinear, "cuda")
    x = torch.randn(2, 8192, device="cuda", dtype=torch.bfloat16)[:, ::2]  # strided: copied
    assert rel_err(ours(x), ref(x)) < 1e-3
    x = torch.randn(4097, device="cuda", dtype=torch.bfloat16)[1:].view(1, 1, 4096)  # 2 bytes off 16: copied
    assert rel_err(ours(x), ref(x)) < 1e-3 and ours(x).shape == (1, 1, 4096)
    with pytest.raises(ValueError, match="4000 features, the layer takes 4096"):
        ours(x[..., :4000])
    x1 = torch.randn(1, 4096, device="cuda", dtype=torch.bfloat16)
    ours(x1)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = ours(x1)
    x1.copy_(torch.randn_like(x1))
    graph.replay()
    assert rel_err(y, ref(x1)) < 1e-3


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_back_to_back_gemvs_wait_for_their_input() -> None:
    """GEMVs each reading the one before's output, with no other kernel between them: on sm_90+ each is launched
    as a programmatic dependent and starts early, so each must wait for its input. Eager and replayed from a CUDA
    graph with new inputs (a read before the wait would see the last replay's values), they match the torch
    backend's chain. 1024 -> 8192 takes x from global memory, 8192 -> 1024 stages it in shared memory."""
    dt = torch.bfloat16
    layers = [random_int_layer(8192, 1024, 4, 128, True, "gptq", dtype=dt, seed=11),
              random_int_layer(1024, 8192, 4, 128, True, "gptq", dtype=dt, seed=12)]
    refs = [build(layer, TorchIntLinear, "cuda") for layer in layers] * 3
    ours = [build(layer, CudaIntLinear, "cuda") for layer in layers] * 3

    def chain(mods: list, x: torch.Tensor) -> torch.Tensor:
        for m in mods:
            x = m(x)
        return x

    x = torch.randn(1, 1024, device="cuda", dtype=dt)
    assert rel_err(chain(ours, x), chain(refs, x)) < 3e-3
    dependent = torch.cuda.get_device_capability()[0] >= 9 and os.environ.get("AR_KERNELS_PDL", "1") != "0"
    assert (ours[0]._plan(1, dt)[0]._config is not None) == dependent
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = chain(ours, x)
    for seed in range(3):
        x.copy_(torch.randn(1, 1024, generator=torch.Generator().manual_seed(seed)).to("cuda", dt))
        graph.replay()
        assert rel_err(y, chain(refs, x)) < 3e-3


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("rows", [1, 16, 300])
def test_tinygemm_on_cuda(rows: int) -> None:
    err, _, _ = _compare(TinygemmIntLinear, 128, False, "auto_round", torch.bfloat16, rows, out=1024)
    assert err < 5e-3  # bf16 scales: ~2.4e-3 (module docstring)


def test_kernel_source_compiles_with_nvrtc() -> None:
    """Every variant compiles for sm_80 and sm_90 (where an NVRTC library is found; no GPU needed)."""
    from ar_kernels.backends._nvrtc import compile_cubin, nvrtc_library
    from ar_kernels.backends.cuda import _source
    from ar_kernels.errors import MissingDependencyError
    try:
        nvrtc_library()
    except MissingDependencyError:
        pytest.skip("no NVRTC library (a CPU-only torch without nvidia-cuda-nvrtc)")
    for arch in ("sm_80", "sm_90"):
        for bf16, sym, group, mt in ((1, 1, 128, 1), (0, 0, 32, 2), (1, 0, 4096, 4), (0, 1, 48, 1)):
            defines = {"AR_BF16": bf16, "AR_SYM": sym, "AR_GROUP": group, "AR_MT": mt}
            assert compile_cubin(_source(), arch, defines)[:4] == b"\x7fELF"
    for kchunk, ksplit, depth, minb in ((1, 16, 4, 1), (4, 4, 4, 6), (1, 8, 2, 4), (2, 2, 8, 1)):
        defines = {"AR_KCHUNK": kchunk, "AR_KSPLIT": ksplit, "AR_DEPTH": depth, "AR_MINB": minb}
        assert compile_cubin(_source(), "sm_90", defines)[:4] == b"\x7fELF"
    for nt, nacc, ksplit, minb, group in ((2, 1, 16, 2, 128), (4, 2, 8, 2, 32), (2, 1, 4, 8, 48)):
        defines = {"AR_NT": nt, "AR_NACC": nacc, "AR_KSPLIT": ksplit, "AR_MINB": minb, "AR_DEPTH": 1, "AR_KCHUNK": 1,
                   "AR_GROUP": group}
        assert compile_cubin(_source(), "sm_90", defines)[:4] == b"\x7fELF"
    for arch, nt, mt, bf16, sym in (("sm_90", 2, 1, 1, 1), ("sm_90", 1, 4, 0, 0), ("sm_80", 4, 1, 1, 0)):
        defines = {"AR_XSMEM": 1, "AR_NT": nt, "AR_MT": mt, "AR_BF16": bf16, "AR_SYM": sym, "AR_KCHUNK": 1,
                   "AR_DEPTH": 1 if nt > 1 else 2}
        assert compile_cubin(_source(), arch, defines)[:4] == b"\x7fELF"


def test_cuda_gemv_stages_x_for_long_rows_where_it_fits() -> None:
    """x goes to shared memory for in_features >= 8192 (or when forced), where the block and its launch-bound
    blocks per SM fit the device's shared memory (H100 and A100 limits)."""
    h100, a100 = (233472, 232448, 1024), (167936, 166912, 1024)
    assert xsmem_bytes(1, 14336, 16, 2, 2, h100) == 14344 * 2  # the down projection: 2 x (16 KB + 28 KB)
    assert xsmem_bytes(4, 14336, 16, 2, 2, h100) == 0  # 2 x (16 KB + 115 KB) > 228 KB
    assert xsmem_bytes(2, 14336, 16, 2, 2, a100) == 2 * 14344 * 2 and xsmem_bytes(3, 14336, 16, 2, 2, a100) == 0
    assert xsmem_bytes(8, 4096, 8, 4, 2, h100) == 8 * 4104 * 2 and xsmem_bytes(32, 4096, 4, 1, 2, h100) == 0
    assert xsmem_bytes(32, 512, 4, 1, 2, a100) == 32 * 520 * 2
    assert xsmem_bytes(8, 16384, 4, 1, 1, h100) == 0  # one block alone: 8 KB + 262 KB > 227 KB
    short = build(random_int_layer(1024, 4096, 4, 128, True, "gptq", dtype=torch.bfloat16, seed=4096), CudaIntLinear)
    assert not short._config(1)[3]  # short rows: staging not asked for, no device queried


# (kchunk, ksplit, depth); the default (1, auto, 2) runs in the tests above
VARIANTS = [(1, 4, 2), (2, 8, 2), (4, 4, 4), (1, 16, 1), (2, 2, 8)]


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("kchunk,ksplit,depth", VARIANTS)
def test_cuda_gemv_variants_match_torch(monkeypatch: pytest.MonkeyPatch, kchunk: int, ksplit: int, depth: int) -> None:
    """Every layout chunk, K split and step the benchmarks sweep gives the torch backend's product."""
    monkeypatch.setattr(CudaIntLinear, "kchunk", kchunk)
    cases = [(128, True, "gptq", torch.bfloat16, 1536), (32, False, "auto_round", torch.float16, 1536),
             (48, False, "gptq", torch.bfloat16, 1536), (128, True, "gptq", torch.bfloat16, 192)]  # K/64 = 3
    for group, sym, packing, dtype, inp in cases:
        layer = random_int_layer(1000, inp, 4, group, sym, packing, dtype=dtype, bias=True, seed=inp + group)
        ref, ours = build(layer, TorchIntLinear, "cuda"), build(layer, CudaIntLinear, "cuda")
        ours.gemv_ksplit, ours.gemv_depth = ksplit, depth
        for rows in (1, 5, 9, 17):
            x = torch.randn(rows, inp, generator=torch.Generator().manual_seed(rows)).to("cuda", dtype)
            assert rel_err(ours(x), ref(x)) < 1e-3, (group, sym, dtype, inp, rows)
        assert torch.equal(ours.dequantize(dtype), ref.dequantize(dtype))


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("nt,ksplit", [(2, None), (4, None), (2, 16), (4, 4)])
def test_cuda_gemv_tiles_per_warp_match_torch(nt: int, ksplit: int | None) -> None:
    """Several 16-column tiles per warp (one-block steps) give the torch backend's product; a tile count
    that nt does not divide falls back to one tile per warp."""
    cases = [(128, True, "gptq", torch.bfloat16, 1536, 1024), (32, False, "auto_round", torch.float16, 1536, 1024),
             (48, False, "gptq", torch.bfloat16, 1536, 1000), (128, True, "gptq", torch.bfloat16, 192, 1024),
             (-1, True, "gptq", torch.float16, 1024, 1056)]
    for group, sym, packing, dtype, inp, out in cases:
        layer = random_int_layer(out, inp, 4, group, sym, packing, dtype=dtype, bias=True, seed=inp + group + nt)
        ref, ours = build(layer, TorchIntLinear, "cuda"), build(layer, CudaIntLinear, "cuda")
        ours.gemv_nt, ours.gemv_ksplit = nt, ksplit
        for rows in (1, 5, 8, 9):
            x = torch.randn(rows, inp, generator=torch.Generator().manual_seed(rows)).to("cuda", dtype)
            assert rel_err(ours(x), ref(x)) < 1e-3, (group, sym, dtype, inp, out, rows)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("nt", [1, 2, 4])
def test_cuda_gemv_x_in_shared_memory_matches_torch(nt: int) -> None:
    """x staged in shared memory (forced on short rows, the default on long ones) gives the torch backend's
    product for every row tile count, both dtypes, asym zero points and bias."""
    cases = [(128, True, "gptq", torch.bfloat16, 1536, 1024), (32, False, "auto_round", torch.float16, 1536, 1024),
             (48, False, "gptq", torch.bfloat16, 192, 1024), (128, True, "gptq", torch.bfloat16, 8192, 512)]
    for group, sym, packing, dtype, inp, out in cases:
        layer = random_int_layer(out, inp, 4, group, sym, packing, dtype=dtype, bias=True, seed=inp + group + nt)
        ref, ours = build(layer, TorchIntLinear, "cuda"), build(layer, CudaIntLinear, "cuda")
        ours.gemv_nt, ours.gemv_xsmem = nt, True
        for rows in (1, 5, 8, 9, 17, 32):
            x = torch.randn(rows, inp, generator=torch.Generator().manual_seed(rows)).to("cuda", dtype)
            staged = ours._plan(rows, dtype)[3] > 0  # the launch's shared bytes
            assert staged or inp * min(rows, 32) > 16384  # it fits for the short rows
            assert rel_err(ours(x), ref(x)) < 1e-3, (group, sym, dtype, inp, out, rows)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_gemv_default_tiles_per_warp() -> None:
    """The default plan on the benchmark's shapes: 4 tiles and 8 warps per block for 14336 columns, 2 tiles and
    32 warps for 4096 (x staged there: 14336 input channels)."""
    for inp, out, want in ((4096, 14336, 4), (14336, 4096, 2)):
        layer = random_int_layer(out, inp, 4, 128, True, "gptq", dtype=torch.bfloat16, seed=out)
        ref, ours = build(layer, TorchIntLinear, "cuda"), build(layer, CudaIntLinear, "cuda")
        assert ours._nt(1) == want and ours._nt(9) == 1
        assert ours._ksplit(want) == {4: 8, 2: 32}[want]  # about 1600 / 4096 warps
        assert (ours._plan(1, torch.bfloat16)[3] > 0) == (inp >= 8192)
        for rows in (1, 4, 8):
            x = torch.randn(rows, inp, device="cuda", dtype=torch.bfloat16)
            assert rel_err(ours(x), ref(x)) < 1e-3


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_launch_plans_follow_settings_moves_and_dtypes() -> None:
    """The launch worked out once per shape is dropped when a setting changes or the layer moves (new buffer
    addresses); fp32 activations take the dequantize path, since the GEMV reads fp16 / bf16 only."""
    layer = random_int_layer(512, 1024, 4, 128, True, "gptq", dtype=torch.bfloat16, bias=True, seed=3)
    ref, ours = build(layer, TorchIntLinear, "cuda"), build(layer, CudaIntLinear, "cuda")
    x = torch.randn(2, 1024, device="cuda", dtype=torch.bfloat16)
    want = ref(x)
    assert rel_err(ours(x), want) < 1e-3
    assert ours._plan(2, torch.bfloat16)[2] == 32 * ours._ksplit(ours._nt(2))
    ours.gemv_ksplit = 4
    assert ours._plan(2, torch.bfloat16)[2] == 128
    assert rel_err(ours(x), want) < 1e-3
    ours.cpu()
    ours.cuda()
    assert ours._plan(2, torch.bfloat16)[4] == ours.qweight.data_ptr()
    assert rel_err(ours(x), want) < 1e-3
    x32 = x.float()
    assert ours._plan(2, torch.float32) is None
    assert rel_err(ours(x32), ref(x32)) < 1e-5


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("backend", ["aot_eager", "cudagraphs"])
def test_cuda_layer_under_torch_compile(backend: str) -> None:
    """Compiled whole (and replayed from CUDA graphs by the ``cudagraphs`` backend), the layer gives the torch
    backend's product at decode and prefill row counts."""
    layer = random_int_layer(1024, 4096, 4, 128, True, "gptq", dtype=torch.bfloat16, bias=True, seed=9)
    ref, ours = build(layer, TorchIntLinear, "cuda"), build(layer, CudaIntLinear, "cuda")
    for rows, op in ((1, "cuda_int4_gemv"), (5, "cuda_int4_gemv"), (64, "cuda_int4_gemm"), (300, "cuda_int4_dequant")):
        x = torch.randn(rows, 4096, device="cuda", dtype=torch.bfloat16)
        out, graphs = _compiled_graphs(ours, x, backend)
        assert len(graphs) == 1 and f"ar_kernels.{op}.default" in _ops_in(graphs)
        assert rel_err(out, ref(x)) < 1e-3, (backend, rows)
        x2 = torch.randn_like(x)  # a second call: the graph (or its CUDA graph) replayed on new data
        out2 = torch.compile(ours, fullgraph=True, backend=backend)(x2)
        assert rel_err(out2, ref(x2)) < 1e-3, (backend, rows)

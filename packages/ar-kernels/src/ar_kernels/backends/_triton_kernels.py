"""Triton kernels of the ``triton`` backend (this module imports triton; ``triton.py`` does not).

Weights are in the kernel layout of ``base``: qweight int32 [ceil(K / P), N] with P = 32 // BITS
codes per word along K, scales and zeros [ngroups, N]. Each kernel dequantizes in registers with
``w = ((q - zero) * scale)`` in fp32 rounded to the activation dtype, exactly as the torch
backend does, so the two agree up to the order of the fp32 accumulation.

- ``int_gemm``: tiles of (BLOCK_M x BLOCK_N), K loop, ``tl.dot`` on the dequantized tile (prefill).
- ``int_gemv``: split-K for a few rows (decode): each program reduces one K-slice of a column
  block and atomically adds its fp32 partial sums into the output.
- ``int_dequant``: the whole weight to (K, N) in the activation dtype, for cuBLAS on huge batches.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


@triton.jit
def _cast(x, dtype: tl.constexpr, RNE: tl.constexpr):
    """fp32 -> ``dtype``. RNE rounds bf16 to nearest-even by hand: Triton's CPU interpreter truncates,
    GPUs round natively (RNE is False there, so this costs nothing on a GPU). RNE is set only for
    bf16 under TRITON_INTERPRET=1."""
    if RNE:
        b = x.to(tl.uint32, bitcast=True)
        b = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000
        x = b.to(tl.float32, bitcast=True)
    return x.to(dtype)


@triton.jit
def _gemm_kernel(x_ptr, qw_ptr, s_ptr, z_ptr, b_ptr, out_ptr, M, N, K, stride_xm, stride_om,
                 GROUP: tl.constexpr, BITS: tl.constexpr, HAS_BIAS: tl.constexpr, RNE: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    PACK: tl.constexpr = 32 // BITS
    MASK: tl.constexpr = (1 << BITS) - 1
    # grouped program order: GROUP_M row blocks share the same weight columns in L2
    pid = tl.program_id(0)
    n_m, n_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * n_n
    first_m = (pid // per_group) * GROUP_M
    size_m = tl.minimum(n_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % size_m
    pid_n = (pid % per_group) // size_m
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    m_ok, n_ok = offs_m < M, offs_n < N
    dtype = x_ptr.dtype.element_ty
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + offs_k
        k_ok = k < K
        x = tl.load(x_ptr + offs_m[:, None] * stride_xm + k[None, :], mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        qw = tl.load(qw_ptr + (k // PACK)[:, None] * N + offs_n[None, :], mask=k_ok[:, None] & n_ok[None, :], other=0)
        # (BLOCK_K, BLOCK_N) codes as 2^23 + q, read as fp32 (no int-to-float conversion)
        f = (((qw >> ((k % PACK) * BITS)[:, None]) & MASK) | 0x4B000000).to(tl.float32, bitcast=True)
        g = k0 // GROUP  # BLOCK_K divides GROUP: one group row per tile
        s = tl.load(s_ptr + g * N + offs_n, mask=n_ok, other=0.0).to(tl.float32)
        zb = tl.load(z_ptr + g * N + offs_n, mask=n_ok, other=0.0).to(tl.float32) + 8388608.0
        w = _cast((f - zb[None, :]) * s[None, :], dtype, RNE)
        if RNE:  # the interpreter's bf16 tl.dot is wrong: multiply the (exact) bf16 values in fp32
            acc = tl.dot(x.to(tl.float32), w.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(x, w, acc)
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    tl.store(out_ptr + offs_m[:, None] * stride_om + offs_n[None, :], _cast(acc, out_ptr.dtype.element_ty, RNE),
             mask=m_ok[:, None] & n_ok[None, :])


@triton.jit
def _gemv_kernel(x_ptr, qw_ptr, s_ptr, z_ptr, out_ptr, N, K, stride_xm, K_SPLIT,
                 GROUP: tl.constexpr, BITS: tl.constexpr, RNE: tl.constexpr, FAST: tl.constexpr,
                 EVEN: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, STAGES: tl.constexpr):
    """One row of x (program axis 2) times a (K_SPLIT x BLOCK_N) slice of W, added into fp32 out.

    Codes become floats without the (slow) int-to-float conversion: a code masked in place at bit
    ``sh`` of its word, OR-ed into the exponent of 2^23 and read as fp32, is 2^23 + t * 2^sh, so
    subtracting 2^23 (+ zero * 2^sh) is exact; the 2^sh is folded into x or the scale. The upper
    half of a word is shifted down once so every code stays inside the 23-bit mantissa.

    FAST=False (default) rounds each weight to the activation dtype as the torch backend does,
    so both agree to ~1e-4. FAST=True sums t * x per group and applies (scale, zero) once per
    group: ~2x fewer instructions, exact in fp32 (closer to the true quantized weights than a
    bf16-rounded weight, hence ~1e-3 from the torch backend in bf16).
    EVEN: every tile lies inside (K, N), so the hot loop loads without masks.
    """
    PACK: tl.constexpr = 32 // BITS
    HALF: tl.constexpr = PACK // 2
    MASK: tl.constexpr = (1 << BITS) - 1
    WORDS: tl.constexpr = BLOCK_K // PACK
    pid_n, pid_k, m = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < N
    offs_w = tl.arange(0, WORDS)
    dtype = x_ptr.dtype.element_ty
    k_start = pid_k * K_SPLIT
    acc = tl.zeros((WORDS, BLOCK_N), dtype=tl.float32)
    out = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for k0 in tl.range(k_start, k_start + K_SPLIT, BLOCK_K, num_stages=STAGES):
        row = k0 // PACK + offs_w  # word rows of this tile
        if EVEN:
            qw = tl.load(qw_ptr + row[:, None] * N + offs_n[None, :])
        else:
            qw = tl.load(qw_ptr + row[:, None] * N + offs_n[None, :],
                         mask=(row[:, None] * PACK < K) & n_ok[None, :], other=0)
        qhi = qw >> 16
        g = tl.minimum(k0, K - 1) // GROUP  # the last slice may run past K: stay on a real group row
        s = tl.load(s_ptr + g * N + offs_n, mask=n_ok, other=0.0).to(tl.float32)[None, :]
        z = tl.load(z_ptr + g * N + offs_n, mask=n_ok, other=0.0).to(tl.float32)[None, :]
        sx = 0.0
        if FAST:
            acc = tl.zeros((WORDS, BLOCK_N), dtype=tl.float32)
        for j in tl.static_range(PACK):
            sh = (j % HALF) * BITS
            if j < HALF:
                src = qw
            else:
                src = qhi
            kk = row * PACK + j
            if EVEN:
                xk = tl.load(x_ptr + m * stride_xm + kk).to(tl.float32)
            else:
                xk = tl.load(x_ptr + m * stride_xm + kk, mask=kk < K, other=0.0).to(tl.float32)
            f = ((src & (MASK << sh)) | 0x4B000000).to(tl.float32, bitcast=True)  # 2^23 + t * 2^sh
            if FAST:
                sx += tl.sum(xk, axis=0)
                acc += (f - 8388608.0) * (xk * (1.0 / (1 << sh)))[:, None]
            else:
                w = (f - (8388608.0 + z * (1 << sh))) * (s * (1.0 / (1 << sh)))  # (t - zero) * scale
                acc += _cast(w, dtype, RNE).to(tl.float32) * xk[:, None]
        if FAST:
            out += (tl.sum(acc, axis=0) - z.reshape(BLOCK_N) * sx) * s.reshape(BLOCK_N)
    if not FAST:
        out = tl.sum(acc, axis=0)
    tl.atomic_add(out_ptr + m * N + offs_n, out, mask=n_ok)


@triton.jit
def _dequant_kernel(qw_ptr, s_ptr, z_ptr, w_ptr, N, K, GROUP: tl.constexpr, BITS: tl.constexpr,
                    RNE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """The weight as (K, N) in the activation dtype (the qweight's own orientation: no transpose)."""
    PACK: tl.constexpr = 32 // BITS
    MASK: tl.constexpr = (1 << BITS) - 1
    offs_k = tl.program_id(0) * BLOCK_K + tl.arange(0, BLOCK_K)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    ok = (offs_k[:, None] < K) & (offs_n[None, :] < N)
    qw = tl.load(qw_ptr + (offs_k // PACK)[:, None] * N + offs_n[None, :], mask=ok, other=0)
    f = (((qw >> ((offs_k % PACK) * BITS)[:, None]) & MASK) | 0x4B000000).to(tl.float32, bitcast=True)
    g = (offs_k // GROUP)[:, None] * N + offs_n[None, :]
    s = tl.load(s_ptr + g, mask=ok, other=0.0).to(tl.float32)
    zb = tl.load(z_ptr + g, mask=ok, other=0.0).to(tl.float32) + 8388608.0
    w = _cast((f - zb) * s, w_ptr.dtype.element_ty, RNE)
    tl.store(w_ptr + offs_k[:, None] * N + offs_n[None, :], w, mask=ok)


def _gemm_configs() -> list[triton.Config]:
    if INTERPRET:
        return [triton.Config({"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 4})]
    shapes = [(128, 128, 64, 4, 4), (128, 256, 64, 3, 8), (64, 128, 64, 4, 4), (128, 128, 32, 4, 4),
              (64, 64, 64, 4, 4), (16, 64, 128, 4, 4), (32, 128, 64, 4, 4), (256, 128, 64, 3, 8)]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "GROUP_M": 8}, num_stages=s, num_warps=w)
            for m, n, k, s, w in shapes]


def _prune(configs: list[triton.Config], named_args: dict, **kwargs: object) -> list[triton.Config]:
    """Keep configs whose BLOCK_K divides the group (one scale row per K tile)."""
    group = kwargs.get("GROUP", named_args.get("GROUP"))
    ok = [c for c in configs if group % c.kwargs["BLOCK_K"] == 0]
    return ok or configs[:1]


_gemm = _gemm_kernel if INTERPRET else triton.autotune(
    configs=_gemm_configs(), key=["M", "N", "K", "GROUP", "BITS"],
    prune_configs_by={"early_config_prune": _prune})(_gemm_kernel)


def _rne(dtype: torch.dtype) -> bool:
    """Round bf16 by hand only where the interpreter would truncate."""
    return INTERPRET and dtype == torch.bfloat16


def block_k_for(group: int, pack: int, cap: int = 128) -> int:
    """Largest power of two <= cap dividing ``group`` and multiple of ``pack`` (0 if none)."""
    bk = cap
    while bk >= pack and (group % bk or bk % pack):
        bk //= 2
    return bk if bk >= max(pack, 16) else 0


def int_gemm(x: Tensor, qweight: Tensor, scales: Tensor, zeros: Tensor, bias: Tensor | None, bits: int,
             group: int, n: int) -> Tensor:
    """x (M, K) @ dequant(W) -> (M, N) in x's dtype."""
    m, k = x.shape
    out = torch.empty((m, n), dtype=x.dtype, device=x.device)
    grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)  # noqa: E731
    if INTERPRET:
        cfg = _gemm_configs()[0].kwargs
        bk = min(cfg["BLOCK_K"], block_k_for(group, 32 // bits))
        _gemm[grid](x, qweight, scales, zeros, bias if bias is not None else out, out, m, n, k, x.stride(0),
                    out.stride(0), GROUP=group, BITS=bits, HAS_BIAS=bias is not None, RNE=_rne(x.dtype),
                    **{**cfg, "BLOCK_K": bk})
    else:
        _gemm[grid](x, qweight, scales, zeros, bias if bias is not None else out, out, m, n, k, x.stride(0),
                    out.stride(0), GROUP=group, BITS=bits, HAS_BIAS=bias is not None, RNE=False)
    return out


# best of benchmarks/gemv_sweep.py on an H100 (4096 x 14336, W4 g128, bf16): ~31.5 us exact, ~26 us fast
GEMV_DEFAULTS = {"block_n": 256, "block_k": 32, "split_target": 4096, "num_warps": 2, "stages": 2}


def int_gemv(x: Tensor, qweight: Tensor, scales: Tensor, zeros: Tensor, bits: int, group: int, n: int,
             fast: bool = False, **cfg: int) -> Tensor:
    """A few rows x (M, K) @ dequant(W) -> (M, N) fp32, split over K to fill the GPU.

    cfg overrides ``GEMV_DEFAULTS``: block_n columns and block_k rows per tile (block_k is cut to
    divide the group), split_target programs per row (K is split until about that many), warps
    and pipeline stages.
    """
    c = {**GEMV_DEFAULTS, **cfg}
    if INTERPRET:
        c.update(block_n=32, block_k=32, stages=1)
    m, k = x.shape
    bk = block_k_for(group, 32 // bits, c["block_k"])
    n_blocks = triton.cdiv(n, c["block_n"])
    tiles = triton.cdiv(k, bk)
    target = max(1, min(tiles, c["split_target"] // n_blocks))
    splits = next(d for d in range(target, 0, -1) if tiles % d == 0)  # equal slices: no tile past K
    k_split = triton.cdiv(tiles, splits) * bk  # a multiple of BLOCK_K
    even = k % k_split == 0 and n % c["block_n"] == 0
    out = torch.zeros((m, n), dtype=torch.float32, device=x.device)
    grid = (n_blocks, triton.cdiv(k, k_split), m)
    _gemv_kernel[grid](x, qweight, scales, zeros, out, n, k, x.stride(0), k_split, GROUP=group, BITS=bits,
                       RNE=_rne(x.dtype), FAST=fast, EVEN=even, BLOCK_N=c["block_n"], BLOCK_K=bk, STAGES=c["stages"],
                       num_warps=c["num_warps"])
    return out


def int_dequant(qweight: Tensor, scales: Tensor, zeros: Tensor, bits: int, group: int, k: int, n: int,
                dtype: torch.dtype) -> Tensor:
    """The weight (K, N) in ``dtype``: ``x @ w`` is the layer's product."""
    w = torch.empty((k, n), dtype=dtype, device=qweight.device)
    bk, bn = (32, 32) if INTERPRET else (32, 256)
    grid = (triton.cdiv(k, bk), triton.cdiv(n, bn))
    _dequant_kernel[grid](qweight, scales, zeros, w, n, k, GROUP=group, BITS=bits, RNE=_rne(dtype), BLOCK_N=bn,
                          BLOCK_K=bk)
    return w

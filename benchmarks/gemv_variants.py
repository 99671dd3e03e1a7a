"""Experimental GEMV layouts for batch-1 decode, timed against the package's kernel; prints JSON.

    python benchmarks/gemv_variants.py
A variant that wins moves into ``ar_kernels/backends/_triton_kernels.py``.
"""
from __future__ import annotations

import functools
import itertools
import json

import torch
import triton
import triton.language as tl
from ar_kernels import TorchIntLinear, TritonIntLinear
from ar_kernels.backends import triton as tb
from kernel_bench import Timer, build_layer, graphed, rel_err


@triton.jit
def gemv_dup(x_ptr, qw_ptr, s_ptr, z_ptr, out_ptr, N, K, K_SPLIT, GROUP: tl.constexpr, BITS: tl.constexpr,
             BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, STAGES: tl.constexpr):
    """(BLOCK_K, BLOCK_N) tiles: each word loaded once per code it holds (L1 hits), x loaded once."""
    PACK: tl.constexpr = 32 // BITS
    MASK: tl.constexpr = (1 << BITS) - 1
    pid_n, pid_k = tl.program_id(0), tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    dtype = x_ptr.dtype.element_ty
    acc = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
    shift = ((offs_k % PACK) * BITS)[:, None]
    k_start = pid_k * K_SPLIT
    for k0 in tl.range(k_start, k_start + K_SPLIT, BLOCK_K, num_stages=STAGES):
        k = k0 + offs_k
        qw = tl.load(qw_ptr + (k // PACK)[:, None] * N + offs_n[None, :])
        x = tl.load(x_ptr + k).to(tl.float32)
        g = k // GROUP
        s = tl.load(s_ptr + g[:, None] * N + offs_n[None, :]).to(tl.float32)
        zb = tl.load(z_ptr + g[:, None] * N + offs_n[None, :]).to(tl.float32) + 8388608.0
        f = (((qw >> shift) & MASK) | 0x4B000000).to(tl.float32, bitcast=True)
        w = ((f - zb) * s).to(dtype).to(tl.float32)
        acc += w * x[:, None]
    tl.atomic_add(out_ptr + offs_n, tl.sum(acc, axis=0))


def run_dup(x, tri, bits, group, n, bn, bk, splits, warps, stages):
    k = x.shape[1]
    out = torch.zeros((1, n), dtype=torch.float32, device=x.device)
    k_split = k // splits
    gemv_dup[(n // bn, splits)](x, tri.qweight, tri.scales, tri.zeros, out, n, k, k_split, GROUP=group, BITS=bits,
                                BLOCK_N=bn, BLOCK_K=bk, STAGES=stages, num_warps=warps)
    return out


def main() -> None:
    inp, outf, bits, group, dt = 4096, 14336, 4, 128, torch.bfloat16
    tri = build_layer(TritonIntLinear, inp, outf, bits, group, dt)
    ref = build_layer(TorchIntLinear, inp, outf, bits, group, dt)
    x = torch.randn(1, inp, device="cuda", dtype=dt)
    want = ref(x)
    timer = Timer(30, 5)
    k = tb.kernels()
    res = {"package_graph_us": timer(graphed(lambda: tri(x))),
           "package_kernel_us": timer(lambda: k.int_gemv(x, tri.qweight, tri.scales, tri.zeros, bits, group, outf))}
    rows = []
    for bn, bk, splits, warps, stages in itertools.product((32, 64, 128), (128, 256, 512), (4, 8, 16),
                                                            (4, 8), (1, 3)):
        f = functools.partial(run_dup, x, tri, bits, group, outf, bn, bk, splits, warps, stages)
        try:
            err = rel_err(f().to(dt), want)
            rows.append({"bn": bn, "bk": bk, "splits": splits, "warps": warps, "stages": stages, "us": timer(f),
                         "rel_err": err})
        except Exception as exc:
            rows.append({"bn": bn, "bk": bk, "error": str(exc)[:80]})
    rows.sort(key=lambda r: r.get("us", 1e9))
    res["dup_best"] = rows[:8]
    print(json.dumps(res))


if __name__ == "__main__":
    main()

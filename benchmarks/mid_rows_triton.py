"""Experiment: a split-K Triton GEMM for 33-512 rows (where the W4 layers now dequantize + cuBLAS, 2.5x slower).

The triton backend's dequantize-in-register GEMM, with the K loop split over SPLIT programs that write fp32
partial sums to a workspace; the splits are then summed in a fixed order (deterministic) and cast. Tried on
the triton layer's GPTQ-style layout (4096 -> 14336, W4 g128 sym, bf16) against bf16 ``torch.matmul`` (faster
layout) and the torch backend (relative error), L2 flushed before each call.

    PYTHONPATH=packages/ar-kernels/src:benchmarks python benchmarks/mid_rows_triton.py --json out.json
"""
from __future__ import annotations

import argparse
import json

import torch
import triton
import triton.language as tl
from kernel_bench import Timer, bf16_weights, build_layer, rel_err, time_bf16

from ar_kernels import TorchIntLinear, TritonIntLinear


@triton.jit
def _splitk_kernel(x_ptr, qw_ptr, s_ptr, z_ptr, ws_ptr, M, N, K, K_SPLIT,
                   GROUP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_n, pid_m, sid = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    m_ok = offs_m < M
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    k_lo = sid * K_SPLIT
    for k0 in range(k_lo, k_lo + K_SPLIT, BLOCK_K):
        k = k0 + offs_k
        x = tl.load(x_ptr + offs_m[:, None] * K + k[None, :], mask=m_ok[:, None], other=0.0)
        qw = tl.load(qw_ptr + (k // 8)[:, None] * N + offs_n[None, :])
        f = (((qw >> ((k % 8) * 4)[:, None]) & 15) | 0x4B000000).to(tl.float32, bitcast=True)
        g = k0 // GROUP
        s = tl.load(s_ptr + g * N + offs_n).to(tl.float32)
        zb = tl.load(z_ptr + g * N + offs_n).to(tl.float32) + 8388608.0
        w = ((f - zb[None, :]) * s[None, :]).to(x_ptr.dtype.element_ty)
        acc = tl.dot(x, w, acc)
    tl.store(ws_ptr + (sid * M + offs_m[:, None]) * N + offs_n[None, :], acc, mask=m_ok[:, None])


CONFIGS = [  # (BLOCK_M, BLOCK_N, BLOCK_K, SPLIT, warps, stages)
    (64, 128, 64, 1, 4, 4), (64, 128, 64, 2, 4, 4), (64, 128, 64, 4, 4, 4), (64, 64, 64, 4, 4, 4),
    (64, 64, 128, 4, 4, 3), (64, 128, 128, 2, 8, 3), (32, 128, 64, 4, 4, 4), (64, 256, 64, 4, 8, 3),
    (128, 128, 64, 2, 8, 3), (128, 128, 64, 1, 8, 3), (64, 64, 64, 8, 4, 4), (128, 256, 64, 1, 8, 3),
]


def splitk_gemm(layer: TritonIntLinear, x: torch.Tensor, cfg: tuple) -> torch.Tensor:
    bm, bn, bk, split, warps, stages = cfg
    m, k = x.shape
    n = layer.out_features
    ws = torch.empty((split, m, n), device=x.device, dtype=torch.float32)
    grid = (n // bn, triton.cdiv(m, bm), split)
    _splitk_kernel[grid](x, layer.qweight, layer.scales, layer.zeros, ws, m, n, k, k // split,
                         GROUP=layer.desc.group, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, num_warps=warps,
                         num_stages=stages)
    return (ws[0] if split == 1 else ws.sum(0)).to(x.dtype)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[33, 64, 128, 256, 512])
    p.add_argument("--json", default=None)
    a = p.parse_args()
    dtype, inp, out = torch.bfloat16, 4096, 14336
    ref = build_layer(TorchIntLinear, inp, out, 4, 128, dtype)
    tri = build_layer(TritonIntLinear, inp, out, 4, 128, dtype)
    ws = bf16_weights(ref.dequantize(dtype).t().contiguous())
    timer, res = Timer(30, 5), {"device": torch.cuda.get_device_name(), "rows": []}
    with torch.no_grad():
        for m in a.rows:
            x = torch.randn(m, inp, device="cuda", dtype=dtype)
            want = ref(x)
            row: dict = {"rows": m}
            time_bf16(row, "bf16_us", timer, ws, x, graph=False)
            for cfg in CONFIGS:
                try:
                    err = rel_err(splitk_gemm(tri, x, cfg), want)
                    row[str(cfg)] = {"us": timer(lambda cfg=cfg: splitk_gemm(tri, x, cfg)), "err": err}
                except Exception as exc:  # noqa: BLE001  (out of shared memory and the like)
                    row[str(cfg)] = {"error": str(exc)[:200]}
            best = min((v["us"], c) for c, v in row.items() if isinstance(v, dict) and "us" in v)
            row["best"] = best
            print(m, f"bf16 {row['bf16_us']:.1f}", "best", best, flush=True)
            res["rows"].append(row)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()

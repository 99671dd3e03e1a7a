"""Sweep the split-K GEMV's launch parameters on the benchmark layer; prints JSON, best first.

    python benchmarks/gemv_sweep.py [--in 4096 --out 14336 --bits 4 --group 128]
Used to pick ``GEMV_DEFAULTS`` in ``ar_kernels/backends/_triton_kernels.py``.
"""
from __future__ import annotations

import argparse
import functools
import itertools
import json

import torch
from ar_kernels import TorchIntLinear, TritonIntLinear
from ar_kernels.backends import triton as tb
from kernel_bench import Timer, build_layer, rel_err


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--in", dest="inp", type=int, default=4096)
    p.add_argument("--out", type=int, default=14336)
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--group", type=int, default=128)
    p.add_argument("--block-n", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--block-k", type=int, nargs="+", default=[64, 128])
    p.add_argument("--split", type=int, nargs="+", default=[1024, 2048, 4096])
    p.add_argument("--warps", type=int, nargs="+", default=[2, 4])
    p.add_argument("--stages", type=int, nargs="+", default=[2, 4])
    a = p.parse_args()
    dt = torch.bfloat16
    tri = build_layer(TritonIntLinear, a.inp, a.out, a.bits, a.group, dt)
    ref = build_layer(TorchIntLinear, a.inp, a.out, a.bits, a.group, dt)
    k = tb.kernels()
    x = torch.randn(1, a.inp, device="cuda", dtype=dt)
    want = ref(x)
    w = ref.dequantize(dt).t().contiguous()
    timer = Timer(30, 5)
    base = timer(lambda: torch.matmul(x, w))
    rows = []
    for fast, bn, bk, split, warps, stages in itertools.product((False, True), a.block_n, a.block_k, a.split,
                                                                a.warps, a.stages):
        cfg = dict(fast=fast, block_n=bn, block_k=bk, split_target=split, num_warps=warps, stages=stages)
        f = functools.partial(k.int_gemv, x, tri.qweight, tri.scales, tri.zeros, a.bits, a.group, a.out, **cfg)
        try:
            err = rel_err(f().to(dt), want)
            rows.append({**cfg, "us": timer(f), "rel_err": err})
        except Exception as exc:  # a config that does not compile (registers) is skipped
            rows.append({**cfg, "error": str(exc)[:100]})
    rows.sort(key=lambda r: r.get("us", 1e9))
    best = {str(f): [r for r in rows if r.get("fast") == f][:6] for f in (False, True)}
    print(json.dumps({"bf16_matmul_us": base, "best": best}))


if __name__ == "__main__":
    main()

"""Sweep the cuda backend's GEMV launch parameters (K split, loads in flight) and batch rows; prints a table.

    python benchmarks/kernel_bench_cuda_sweep.py [--shapes 4096x14336 14336x4096] [--json out.json]
Each case: relative error against the torch backend, median time replayed from a CUDA graph with
the L2 flushed (kernel_bench.Timer), next to bf16 ``torch.matmul``. Used to pick
``CudaIntLinear``'s defaults (benchmarks/kernel_bench_notes.md).
"""
from __future__ import annotations

import argparse
import json

import torch
from kernel_bench import Timer, build_layer, graphed, rel_err

from ar_kernels import CudaIntLinear, TorchIntLinear
from ar_kernels.backends import cuda as cuda_backend


def run_case(layer: torch.nn.Module, ref: torch.nn.Module, w: torch.Tensor, rows: int, timer: Timer,
             dtype: torch.dtype) -> dict:
    x = torch.randn(rows, w.shape[0], device="cuda", dtype=dtype)
    with torch.no_grad():
        err = rel_err(layer(x), ref(x))
        return {"rows": rows, "rel_err": err, "graph_us": timer(graphed(lambda: layer(x))),
                "bf16_graph_us": timer(graphed(lambda: torch.matmul(x, w)))}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--shapes", nargs="+", default=["4096x14336", "14336x4096"], help="in x out")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16"))
    p.add_argument("--ksplit", type=int, nargs="+", default=[2, 4, 8, 16])
    p.add_argument("--depth", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument("--json", default=None)
    a = p.parse_args()
    dtype = getattr(torch, a.dtype)
    timer = Timer(30, 5)
    out = []
    for shape in a.shapes:
        inp, n = map(int, shape.split("x"))
        ref = build_layer(TorchIntLinear, inp, n, 4, 128, dtype)
        layer = build_layer(CudaIntLinear, inp, n, 4, 128, dtype)
        w = ref.dequantize(dtype).t().contiguous()
        configs = []
        for ks in a.ksplit:
            for depth in a.depth:
                layer.gemv_ksplit, layer.gemv_depth = ks, depth
                r = run_case(layer, ref, w, 1, timer, dtype)
                k = cuda_backend.kernels(0, dtype == torch.bfloat16, layer.sym, 128, 1, ks, depth)["ar_w4_gemv"]
                configs.append({**r, "shape": shape, "ksplit": ks, "depth": depth, "regs": k.attribute(4),
                                "local_bytes": k.attribute(3)})
                print(f"{shape:<12} ksplit {ks:>2} depth {depth} regs {configs[-1]['regs']:>3}: "
                      f"{r['graph_us']:7.1f} us (bf16 {r['bf16_graph_us']:6.1f}) err {r['rel_err']:.1e}", flush=True)
        best = min(configs, key=lambda c: c["graph_us"])
        layer.gemv_ksplit, layer.gemv_depth = best["ksplit"], best["depth"]
        rows = []
        for m in a.rows:
            r = run_case(layer, ref, w, m, timer, dtype)
            rows.append({**r, "shape": shape, "ksplit": best["ksplit"], "depth": best["depth"]})
            print(f"{shape:<12} best config, {m:>2} rows: {r['graph_us']:7.1f} us (bf16 {r['bf16_graph_us']:6.1f}, "
                  f"{r['bf16_graph_us'] / r['graph_us']:.2f}x) err {r['rel_err']:.1e}", flush=True)
        out.append({"shape": shape, "configs": configs, "best": best, "rows": rows})
        del ref, layer, w
        torch.cuda.empty_cache()
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "dtype": a.dtype,
                       "results": out}, f, indent=2)


if __name__ == "__main__":
    main()

"""Benchmark ar-kernels' W4 layers against bf16 ``torch.matmul`` on one GPU; prints JSON.

Decode (batch 1) and prefill (batch 2048) on a 4096 x 14336 layer (in x out), 4-bit, group 128,
as in a Llama-3-8B MLP up/gate projection. Weights are random codes packed with
``ar_kernels.packing`` (timing does not depend on values), loaded as the checkpoint would be.
The L2 cache is flushed before every timed call (each layer's weight is read once per token in
a real model, and the 4-bit weight would otherwise sit in the H100's 50 MB L2). Decode is timed
eagerly and inside a CUDA graph (how servers run decode; it removes Python launch overhead).

    python benchmarks/kernel_bench.py                       # defaults above
    python benchmarks/kernel_bench.py --in 4096 --out 4096 --bits 8 --json out.json
Needs only torch, triton and ar_kernels.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable

import torch
from ar_kernels import LayerDesc, TorchIntLinear, TritonIntLinear
from ar_kernels.packing import gptq


def build_layer(cls: type, inp: int, out: int, bits: int, group: int, dtype: torch.dtype) -> torch.nn.Module:
    """A QuantLinear of ``cls`` on CUDA holding random packed weights (sym, GPTQ layout)."""
    g = torch.Generator().manual_seed(0)
    ng = -(-inp // (inp if group == -1 else group))
    codes = torch.randint(0, 2**bits, (out, inp), generator=g, dtype=torch.int32).to(torch.uint8)
    zero = torch.full((out, ng), 2 ** (bits - 1), dtype=torch.int32)
    sd = {"qweight": gptq.pack_qweight(codes, bits), "qzeros": gptq.pack_qzeros(zero, bits),
          "scales": (torch.rand(out, ng, generator=g) * 0.01 + 0.001).half().t().contiguous()}
    desc = LayerDesc(in_features=inp, out_features=out, bits=bits, group_size=group, sym=True, dtype=dtype)
    layer = cls(desc, bias=False, device="meta")
    layer.load_state_dict(sd, assign=True)
    layer = layer.cuda()
    layer.post_init()
    return layer


class Timer:
    """Median GPU time of a callable, the L2 cache flushed before each call (``hot=True``: not flushed).

    The flush *reads* a 256 MB buffer: L2 then holds clean lines, as after the previous layers of a
    model (which read weights). Flushing by writing would leave dirty lines whose write-back competes
    with the timed kernel's reads, a cost a real decode step does not pay.
    """

    def __init__(self, reps: int, warmup: int, hot: bool = False) -> None:
        self.reps, self.warmup, self.hot = reps, warmup, hot
        self.flush = torch.ones(64 * 2**20, dtype=torch.float32, device="cuda")

    def __call__(self, fn: Callable[[], object]) -> float:
        for _ in range(self.warmup):
            fn()
        times = []
        for _ in range(self.reps):
            if not self.hot:
                self.flush.sum()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b) * 1000.0)  # microseconds
        return statistics.median(times)


def graphed(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` captured once in a CUDA graph; the returned callable replays it."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def bench_rows(rows: int, tri: torch.nn.Module, ref: torch.nn.Module, w_bf16: torch.Tensor,
               timer: Timer, dtype: torch.dtype, decode: bool, hot: Timer | None = None) -> dict:
    x = torch.randn(rows, w_bf16.shape[0], device="cuda", dtype=dtype)
    res: dict = {"rows": rows}
    with torch.no_grad():
        res["rel_err_triton_vs_torch"] = rel_err(tri(x), ref(x))
        res["bf16_matmul_us"] = timer(lambda: torch.matmul(x, w_bf16))
        res["torch_backend_us"] = timer(lambda: ref(x))
        res["triton_us"] = timer(lambda: tri(x))
        if decode:
            res["bf16_matmul_graph_us"] = timer(graphed(lambda: torch.matmul(x, w_bf16)))
            res["triton_graph_us"] = timer(graphed(lambda: tri(x)))
            res["speedup_vs_bf16"] = res["bf16_matmul_us"] / res["triton_us"]
            res["speedup_vs_bf16_graph"] = res["bf16_matmul_graph_us"] / res["triton_graph_us"]
            tri.fast_gemv = True  # scale per group: exact fp32 dequant, not rounded like the torch backend
            res["rel_err_fast_vs_torch"] = rel_err(tri(x), ref(x))
            res["triton_fast_us"] = timer(lambda: tri(x))
            res["triton_fast_graph_us"] = timer(graphed(lambda: tri(x)))
            res["speedup_fast_vs_bf16"] = res["bf16_matmul_us"] / res["triton_fast_us"]
            res["speedup_fast_vs_bf16_graph"] = res["bf16_matmul_graph_us"] / res["triton_fast_graph_us"]
            tri.fast_gemv = False
            if hot is not None:  # L2 not flushed: the 4-bit weight (29 MB) fits the H100's 50 MB L2
                res["hot_l2_bf16_matmul_graph_us"] = hot(graphed(lambda: torch.matmul(x, w_bf16)))
                res["hot_l2_triton_graph_us"] = hot(graphed(lambda: tri(x)))
        else:
            default = tri.dequant_min_rows
            tri.dequant_min_rows = None  # the dequantize-in-register GEMM
            res["rel_err_fused_vs_torch"] = rel_err(tri(x), ref(x))
            res["triton_fused_gemm_us"] = timer(lambda: tri(x))
            tri.dequant_min_rows = 1  # dequantize the weight once, then cuBLAS
            res["rel_err_dequant_vs_torch"] = rel_err(tri(x), ref(x))
            res["triton_dequant_cublas_us"] = timer(lambda: tri(x))
            tri.dequant_min_rows = default
            best = min(res["triton_fused_gemm_us"], res["triton_dequant_cublas_us"])
            res["best_triton_us"] = best
            res["ratio_to_bf16"] = best / res["bf16_matmul_us"]
            res["ratio_default_path_to_bf16"] = res["triton_us"] / res["bf16_matmul_us"]
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--in", dest="inp", type=int, default=4096)
    p.add_argument("--out", type=int, default=14336)
    p.add_argument("--bits", type=int, default=4, choices=(2, 4, 8))
    p.add_argument("--group", type=int, default=128)
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16"))
    p.add_argument("--decode-rows", type=int, nargs="+", default=[1])
    p.add_argument("--prefill-rows", type=int, nargs="+", default=[2048])
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--json", default=None, help="also write the result to this file")
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print(json.dumps({"error": "CUDA is not available"}))
        return 1
    dtype = getattr(torch, a.dtype)
    tri = build_layer(TritonIntLinear, a.inp, a.out, a.bits, a.group, dtype)
    ref = build_layer(TorchIntLinear, a.inp, a.out, a.bits, a.group, dtype)
    w_bf16 = ref.dequantize(dtype).t().contiguous()  # (in, out): x @ w as a dense layer would
    timer = Timer(a.reps, a.warmup)
    import triton
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
              "shape_in_out": [a.inp, a.out], "bits": a.bits, "group": a.group, "dtype": a.dtype,
              "decode": [bench_rows(r, tri, ref, w_bf16, timer, dtype, True, Timer(a.reps, a.warmup, hot=True))
                         for r in a.decode_rows],
              "prefill": [bench_rows(r, tri, ref, w_bf16, timer, dtype, False) for r in a.prefill_rows]}
    text = json.dumps(result, indent=2)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

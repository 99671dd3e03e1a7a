"""Is the decode GEMV bound by memory or by the SM? Its time with the weight cold (L2 flushed) and hot (in L2).

    PYTHONPATH=packages/ar-kernels/src:benchmarks python benchmarks/kernel_bench_cuda_l2.py --json out.json

kernel_bench's ``hot`` timer launches the graph onto an idle GPU, so it also pays the launch latency the
cold timer hides behind its flush. Here every timed call follows a ~20 us ``torch.cuda._sleep`` on the
stream in both modes (cold: flush, then sleep), so both see the same start. Timed: a graph of one tiny
kernel (the floor), the shipped layer's GEMV (1 row), a pure read of its 29.4 MB weight (kernel_bench_read_floor's
``stream`` reader, 4 x 8 warps per SM, 4 loads in flight) and bf16 ``torch.matmul``. Where hot is far below
cold the GEMV waits on DRAM, not on its own instructions.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics

import torch
from kernel_bench import build_layer, graphed
from kernel_bench_read_floor import SRC

from ar_kernels import CudaIntLinear
from ar_kernels.backends._nvrtc import compile_module


def timed(fn, cold: bool, flush: torch.Tensor, reps: int = 50) -> float:
    for _ in range(10):
        fn()
    times = []
    for _ in range(reps):
        if cold:
            flush.sum()
        torch.cuda._sleep(40_000)  # ~20 us of GPU time: the graph is queued before the GPU reaches it
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) * 1000.0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--in", dest="inp", type=int, default=4096)
    ap.add_argument("--out", type=int, default=14336)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    dev = torch.cuda.current_device()
    sms = torch.cuda.get_device_properties(dev).multi_processor_count
    flush = torch.ones(64 * 2**20, dtype=torch.float32, device="cuda")
    layer = build_layer(CudaIntLinear, a.inp, a.out, 4, 128, torch.bfloat16)
    q = layer.qweight
    out = torch.zeros(4, dtype=torch.int32, device="cuda")
    w_bf16 = torch.randn(a.inp, a.out, device="cuda", dtype=torch.bfloat16)
    x = torch.randn(1, a.inp, device="cuda", dtype=torch.bfloat16)
    tiny = torch.zeros(1, device="cuda")
    rd = compile_module(SRC, {"rd_stream": "ppii"}, dev, {"INFL": 4})["rd_stream"]
    units = q.numel() * 4 // 512
    cases = {"floor (one tiny kernel)": lambda: tiny.add_(1),
             "gemv (shipped layer)": lambda: layer(x),
             "pure read of the weight": lambda: rd(sms * 4, 256, (q.data_ptr(), out.data_ptr(), units, 0)),
             "bf16 torch.matmul": lambda: torch.matmul(x, w_bf16)}
    res: dict = {"device": torch.cuda.get_device_name(), "shape": [a.inp, a.out], "cases": {}}
    with torch.no_grad():
        for name, fn in cases.items():
            g = graphed(fn)
            r = res["cases"][name] = {"cold_us": timed(g, True, flush), "hot_us": timed(g, False, flush)}
            print(f"{name:<26} cold {r['cold_us']:6.2f} us  hot {r['hot_us']:6.2f} us", flush=True)
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

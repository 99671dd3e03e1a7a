"""Where the decode GEMV's time goes: per-warp %globaltimer stamps (start, end of the K loop, end).

    PYTHONPATH=packages/ar-kernels/src:benchmarks python benchmarks/kernel_bench_cuda_trace.py --json out.json

The pass-8 kernel source (results/kernel_bench_cuda_pass8.cu) compiled with AR_TRACE=1 (the stamps go to the `bias` pointer, has_bias 0) in the
shipped plan of each bench shape (its macros from ``cuda.gemv_defines``, x staged where the layer stages it), launched after kernel_bench's L2 flush, each launch also timed by CUDA events
as kernel_bench times it. Reported per shape (medians over launches, microseconds, relative to the first warp's
start): the last warp's start, the K loops' ends (first / median / last), the last store, and the events' time.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics

import torch
from kernel_bench import build_layer
from kernel_bench_cuda_pass8 import PASS8, PASS8_ARGS

from ar_kernels import CudaIntLinear
from ar_kernels.backends._nvrtc import compile_module
from ar_kernels.backends.cuda import gemv_defines


def trace(inp: int, out: int, launches: int) -> dict:
    layer = build_layer(CudaIntLinear, inp, out, 4, 128, torch.bfloat16)
    nt, ks, depth, _ = layer._config(1)
    tiles, xsmem = layer.scales.shape[1] // 16, layer._plan(1, torch.bfloat16)[3]  # the shipped launch's shared bytes
    defines = gemv_defines(True, layer.sym, layer.desc.group, 1, ks, depth, layer.qweight.shape[2], nt, xsmem > 0)
    k = compile_module(PASS8.read_text(), {"ar_w4_gemv": PASS8_ARGS}, 0, {**defines, "AR_TRACE": 1})["ar_w4_gemv"]
    k.allow_shared(xsmem)
    blocks = tiles // nt
    buf = torch.zeros(blocks * ks * 3, dtype=torch.int64, device="cuda")
    x = torch.randn(1, inp, device="cuda", dtype=torch.bfloat16)
    y = torch.empty(1, out, device="cuda", dtype=torch.bfloat16)
    flush = torch.ones(64 * 2**20, dtype=torch.float32, device="cuda")
    args = (layer.qweight.data_ptr(), layer.gemv_params(torch.bfloat16).data_ptr(), x.data_ptr(), buf.data_ptr(),
            y.data_ptr(), 1, out, inp, inp, out, 0, blocks)
    rows: dict = {k2: [] for k2 in ("last_start", "loop_end_first", "loop_end_median", "loop_end_last", "end", "events")}
    for i in range(launches + 5):
        flush.sum()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        k(blocks, 32 * ks, args, xsmem)
        b.record()
        torch.cuda.synchronize()
        if i < 5:
            continue
        t = buf.view(-1, 3).double() / 1000.0  # ns -> us
        t = t - t[:, 0].min()
        ends = t[:, 1].sort().values
        rows["last_start"].append(float(t[:, 0].max()))
        rows["loop_end_first"].append(float(ends[0]))
        rows["loop_end_median"].append(float(ends[len(ends) // 2]))
        rows["loop_end_last"].append(float(ends[-1]))
        rows["end"].append(float(t[:, 2].max()))
        rows["events"].append(a.elapsed_time(b) * 1000.0)
    res = {"shape": [inp, out], "nt": nt, "ksplit": ks, "blocks": blocks}
    res.update({k2: statistics.median(v) for k2, v in rows.items()})
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--launches", type=int, default=30)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    res = {"device": torch.cuda.get_device_name(), "shapes": []}
    for inp, out in ((4096, 14336), (14336, 4096)):
        r = trace(inp, out, a.launches)
        res["shapes"].append(r)
        print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()), flush=True)
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

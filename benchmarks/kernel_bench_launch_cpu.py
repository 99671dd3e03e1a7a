"""CPU time per eager call of the ``cuda`` layer at 1 row, against bf16 ``nn.Linear`` and ``F.linear``.

    PYTHONPATH=packages/ar-kernels/src:benchmarks python benchmarks/kernel_bench_launch_cpu.py --json out.json

Eager decode (no CUDA graph, as ``model.generate`` runs by default) is bound by this time, not by the GPU's, where
it exceeds the kernel's (~16 us on an H100 for these shapes). Each round times 300 calls back to back with no
synchronisation (the GPU queue absorbs the kernels), then waits for the GPU; rounds of the three callables interleave.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time

import torch
from kernel_bench import build_layer
from torch.nn import functional as F

from ar_kernels import CudaIntLinear


def cpu_us(fn, calls: int = 300) -> float:
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    us = (time.perf_counter() - t) / calls * 1e6
    torch.cuda.synchronize()
    return us


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    res: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "shapes": {}}
    for inp, out in ((4096, 14336), (14336, 4096)):
        layer = build_layer(CudaIntLinear, inp, out, 4, 128, torch.bfloat16)
        lin = torch.nn.Linear(inp, out, bias=False, device="cuda", dtype=torch.bfloat16)
        x = torch.randn(1, 1, inp, device="cuda", dtype=torch.bfloat16)
        fns = {"cuda layer": lambda layer=layer, x=x: layer(x), "bf16 nn.Linear": lambda lin=lin, x=x: lin(x),
               "bf16 F.linear": lambda lin=lin, x=x: F.linear(x, lin.weight)}
        times: dict = {k: [] for k in fns}
        with torch.no_grad():
            for fn in fns.values():
                cpu_us(fn, 20)  # warm-up (the layer's first call builds its launch plan)
            for _ in range(a.rounds):
                for name, fn in fns.items():
                    times[name].append(cpu_us(fn))
        shape = f"{inp}x{out}"
        res["shapes"][shape] = {k: {"median_us": statistics.median(v), "min_us": min(v), "us": v} for k, v in times.items()}
        for k, v in res["shapes"][shape].items():
            print(f"{shape} {k:<16} CPU us per call: median {v['median_us']:6.2f}  min {v['min_us']:6.2f}", flush=True)
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

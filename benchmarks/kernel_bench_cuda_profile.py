"""The cuda backend's decode GEMV for a profiler, and its cubin for the disassembler.

    ncu --kernel-name ar_w4_gemv --launch-skip 2 --launch-count 1 python benchmarks/kernel_bench_cuda_profile.py
    python benchmarks/kernel_bench_cuda_profile.py --cubin gemv.cubin && cuobjdump -sass gemv.cubin
"""
from __future__ import annotations

import argparse

import torch
from kernel_bench import build_layer

from ar_kernels import CudaIntLinear
from ar_kernels.backends._nvrtc import compile_cubin
from ar_kernels.backends.cuda import _source

p = argparse.ArgumentParser()
p.add_argument("--cubin", default=None, help="write the bf16 sym g128 variant's cubin here and stop")
p.add_argument("--rows", type=int, default=1)
p.add_argument("--attrs", nargs="*", default=[], metavar="NAME=INT", help="CudaIntLinear attributes, e.g. gemv_ksplit=8")
a = p.parse_args()
if a.cubin:
    major, minor = torch.cuda.get_device_capability()
    with open(a.cubin, "wb") as f:
        f.write(compile_cubin(_source(), f"sm_{major}{minor}", {"AR_BF16": 1, "AR_SYM": 1, "AR_GROUP": 128}))
else:
    attrs = {k: int(v) for k, v in (kv.split("=") for kv in a.attrs)}
    layer = build_layer(CudaIntLinear, 4096, 14336, 4, 128, torch.bfloat16, **attrs)
    x = torch.randn(a.rows, 4096, device="cuda", dtype=torch.bfloat16)
    for _ in range(5):
        layer(x)
    torch.cuda.synchronize()

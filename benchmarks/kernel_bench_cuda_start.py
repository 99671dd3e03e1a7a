"""Where the one-call decode graph's extra start cost goes (issue #6), 4096 -> 14336, W4 g128, bf16, 1 row.

A one-call graph of the cuda GEMV costs ~2.2 us more than one layer of an 8-layer chain; cuBLAS's bf16 GEMV
only ~1.2 us more. This times, with the L2 flushed before each call (kernel_bench.Timer):
- the bf16 baseline in both weight layouts: ``x @ w`` with w (in, out) as kernel_bench does, and
  ``x @ W.t()`` with W (out, in) as ``nn.Linear`` holds it;
- the GEMV one call and 8-layer chain under each shared-memory carveout preference (the GEMV's reduction
  uses 16 KB of static shared memory; an SM that must change its L1 / shared split drains first);
- a graph of a tiny kernel alone (the fixed start cost of a one-call graph);
- a graph of a one-block launch of the same GEMV then the full call, minus the one-block graph alone
  (the full call with its code already fetched).

    PYTHONPATH=packages/ar-kernels/src:benchmarks python benchmarks/kernel_bench_cuda_start.py --json out.json
"""
from __future__ import annotations

import argparse
import copy
import json

import torch
from kernel_bench import Timer, build_layer, graphed

from ar_kernels import CudaIntLinear, TorchIntLinear
from ar_kernels.backends import _nvrtc

CARVEOUT = 9  # CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT (percent of the unified L1 / shared; -1 default)


def set_carveout(kernel: _nvrtc.Kernel, percent: int) -> None:
    _nvrtc._check(_nvrtc._driver().cuFuncSetAttribute(kernel.func, CARVEOUT, percent), "cuFuncSetAttribute")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--chain", type=int, default=8)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    dtype, inp, out = torch.bfloat16, 4096, 14336
    ref = build_layer(TorchIntLinear, inp, out, 4, 128, dtype)
    layer = build_layer(CudaIntLinear, inp, out, 4, 128, dtype)
    x = torch.randn(1, inp, device="cuda", dtype=dtype)
    w_io = ref.dequantize(dtype).t().contiguous()
    w_oi = w_io.t().contiguous()
    copies = [copy.deepcopy(layer) for _ in range(a.chain)]
    kernel, grid, threads, smem, qw, par = layer._plan(1, dtype)
    scratch = torch.empty(1, out, device="cuda", dtype=dtype)

    def one_block() -> None:  # the same kernel, one block (tiles 0-3 only; the output is not used)
        kernel(1, threads, (qw, par, x.data_ptr(), scratch.data_ptr(), scratch.data_ptr(), 1, 64, inp, inp, 64, 0),
               smem)

    timer, res = Timer(50, 10), {"device": torch.cuda.get_device_name(), "rounds": []}
    tiny = torch.zeros(1, device="cuda")
    with torch.no_grad():
        for _ in range(a.rounds):
            row = {"bf16_x_w_in_out_us": timer(graphed(lambda: torch.matmul(x, w_io))),
                   "bf16_x_Wt_linear_layout_us": timer(graphed(lambda: torch.matmul(x, w_oi.t()))),
                   "tiny_kernel_graph_us": timer(graphed(lambda: tiny.add_(1))),
                   "one_block_graph_us": timer(graphed(one_block)),
                   "one_block_then_call_graph_us": timer(graphed(lambda: (one_block(), layer(x))))}
            for c in (-1, 0, 50, 100):
                set_carveout(kernel, c)
                row[f"carveout_{c}"] = {"one_call_us": timer(graphed(lambda: layer(x))),
                                        "chain_us_per_layer": timer(graphed(lambda: [m(x) for m in copies])) / a.chain}
            set_carveout(kernel, -1)
            row["warm_code_call_us"] = row["one_block_then_call_graph_us"] - row["one_block_graph_us"]
            res["rounds"].append(row)
            print(json.dumps(row), flush=True)
    text = json.dumps(res, indent=1)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()

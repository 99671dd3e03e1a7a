"""Where the 4096 -> 14336 GEMV's K loops end, per SM and per warp group (%globaltimer and %smid per warp).

    PYTHONPATH=packages/ar-kernels/src:benchmarks python benchmarks/kernel_bench_cuda_trace_sm.py

The pass-8 experiment kernel (results/kernel_bench_cuda_pass8.cu, AR_TRACE 2) in the shipped plan (4 tiles and
8 warps per block), launched after kernel_bench's L2 flush, 30 launches each, medians printed (microseconds from
the first warp's start; the timer ticks in 0.25 us here):
- ``uniform``: the same kernel on 8448 and 16896 columns (132 and 264 blocks: 1 and 2 blocks on every SM) and on
  the bench's 14336 (224 blocks: 92 SMs hold 2, 40 hold 1): each SM's last K-loop end, fastest and slowest SMs.
- ``pairs``: one block per SM (128 blocks) of a 4-tile group of a warps and a 3-tile group of b warps (``AR_PAIR``,
  ``AR_KS1``): each group's median and last loop end.
"""
from __future__ import annotations

import collections
import statistics

import torch
from kernel_bench import build_layer
from kernel_bench_cuda_pass8 import PASS8, PASS8_ARGS

from ar_kernels import CudaIntLinear
from ar_kernels.backends._nvrtc import compile_module
from ar_kernels.backends.cuda import gemv_defines

LAUNCHES = 30


def run(layer: CudaIntLinear, defines: dict, blocks: int, warps: int) -> list[tuple[torch.Tensor, list[int], float]]:
    """Per launch: the (blocks, warps, 3) stamps in us, each block's SM and the events' time."""
    out = layer.desc.out_features
    k = compile_module(PASS8.read_text(), {"ar_w4_gemv": PASS8_ARGS}, 0, {**defines, "AR_TRACE": 2})["ar_w4_gemv"]
    buf = torch.zeros(blocks * warps * 4, dtype=torch.int64, device="cuda")
    x = torch.randn(1, 4096, device="cuda", dtype=torch.bfloat16)
    y = torch.empty(1, out, device="cuda", dtype=torch.bfloat16)
    flush = torch.ones(64 * 2**20, dtype=torch.float32, device="cuda")
    # nfull = blocks: every block full (with AR_PAIR: every block's first group full, its second short)
    args = (layer.qweight.data_ptr(), layer.gemv_params(torch.bfloat16).data_ptr(), x.data_ptr(), buf.data_ptr(),
            y.data_ptr(), 1, out, 4096, 4096, out, 0, blocks)
    res = []
    for i in range(LAUNCHES + 5):
        flush.sum()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        k(blocks, 32 * warps, args)
        b.record()
        torch.cuda.synchronize()
        if i >= 5:
            raw = buf.view(blocks, warps, 4)
            t = raw[..., :3].double() / 1000.0
            res.append((t - t[..., 0].min(), raw[:, 0, 3].tolist(), a.elapsed_time(b) * 1000.0))
    return res


def uniform() -> None:
    for out in (8448, 16896, 14336):
        layer = build_layer(CudaIntLinear, 4096, out, 4, 128, torch.bfloat16)
        blocks = out // 64
        per_sm = collections.defaultdict(list)
        for t, sm, _ in run(layer, gemv_defines(True, layer.sym, 128, 1, 8, 1, 1, 4, False), blocks, 8):
            ends: dict = collections.defaultdict(float)
            for b, s in enumerate(sm):
                ends[s] = max(ends[s], float(t[b, :, 1].max()))
            for s, e in ends.items():
                per_sm[s].append(e)
        m = sorted((statistics.median(v), s) for s, v in per_sm.items())
        load = collections.Counter(collections.Counter(sm).values())
        print(f"{out} columns, {blocks} blocks, blocks per SM {dict(load)}: SM ends median {statistics.median(v for v, _ in m):.2f}"
              f"  fastest {[(s, v) for v, s in m[:4]]}  slowest {[(s, v) for v, s in m[-4:]]}", flush=True)


def pairs() -> None:
    layer = build_layer(CudaIntLinear, 4096, 14336, 4, 128, torch.bfloat16)
    for ks0, ks1 in ((8, 8), (9, 7), (10, 6)):
        d = {**gemv_defines(True, layer.sym, 128, 1, ks0, 1, 1, 4, False), "AR_MINB": 1, "AR_PAIR": 1, "AR_KS1": ks1}
        st = collections.defaultdict(list)
        for t, _, ev in run(layer, d, 128, ks0 + ks1):
            le = t[..., 1]
            for name, part in (("4-tile", le[:, :ks0]), ("3-tile", le[:, ks0:])):
                st[f"{name} median"].append(float(part.median()))
                st[f"{name} last"].append(float(part.max()))
            st["events"].append(ev)
        print(f"pair {ks0}+{ks1}: " + "  ".join(f"{k} {statistics.median(v):.2f}" for k, v in st.items()), flush=True)


if __name__ == "__main__":
    print(torch.cuda.get_device_name())
    uniform()
    pairs()

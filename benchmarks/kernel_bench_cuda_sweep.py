"""Sweep the cuda backend's GEMV: weight layout, load pipeline, K split, loads in flight, batch rows.

    python benchmarks/kernel_bench_cuda_sweep.py [--shapes 4096x14336 14336x4096] [--json out.json] [--quick]
Each case: relative error against the torch backend, median time replayed from a CUDA graph with
the L2 flushed (kernel_bench.Timer), next to bf16 ``torch.matmul``. A config is
(kchunk, ring, spref, ksplit, depth): the layout (``CudaIntLinear.kchunk``: 1 k-block-major, 0
tile-major), where the loads in flight wait (1 a per-lane cp.async ring in shared memory, 0
registers), scales prefetched into L1, warps per 16 columns, 16-byte loads in flight per lane. ``v1`` is the
first shipped kernel (results/kernel_bench_cuda_v1_gemv.cu) on the tile-major layout, timed in the
same run. Then the best config over 1-32 rows, and prefill (dequantize + cuBLAS) per layout. Used to
pick ``CudaIntLinear``'s defaults (benchmarks/kernel_bench_notes.md). The JSON is rewritten after
every case, so a run cut short keeps what it measured.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import torch
from kernel_bench import Timer, build_layer, graphed, rel_err

from ar_kernels import CudaIntLinear, TorchIntLinear
from ar_kernels.backends import cuda as cuda_backend
from ar_kernels.backends._nvrtc import compile_module

V1 = pathlib.Path(__file__).parent / "results" / "kernel_bench_cuda_v1_gemv.cu"
# (kchunk, ring, spref, ksplit, depth): the configs of the notes' second H100 run without its ring 2
# (bulk copies: wrong results, not faster;
# git show a272ed5:benchmarks/results/kernel_bench_cuda_ring2_bulk_gemv.cu). The first
# run's wider grid (depth 4-16, ksplit 2-16, tile-major and chunked layouts, both rings): git history.
MAIN = [(1, 1, 1, 4, 2), (1, 1, 1, 4, 4), (1, 1, 1, 8, 2), (0, 1, 1, 8, 2), (1, 0, 1, 8, 2), (0, 0, 0, 4, 4),
        (1, 1, 0, 8, 2), (1, 1, 1, 8, 4)]
DOWN = [(1, 1, 1, 16, 4), (1, 1, 1, 16, 2), (1, 0, 1, 16, 2), (0, 0, 1, 16, 2)]
QUICK = [(1, 1, 1, 4, 4), (0, 1, 1, 4, 4), (1, 0, 1, 4, 4), (0, 0, 0, 4, 4)]


def set_config(layer: CudaIntLinear, cfg: tuple) -> None:
    _, layer.gemv_ring, layer.gemv_spref, layer.gemv_ksplit, layer.gemv_depth = cfg


def v1_forward(layer: CudaIntLinear, x: torch.Tensor, out: torch.Tensor) -> None:
    """The first shipped GEMV (4 warps per 16 columns, depth 4) on a tile-major layer's buffers."""
    kern = _v1_kernel(layer.qweight.device.index or 0)
    d = layer.desc
    np_ = layer.scales.shape[1]
    kern(np_ // 16, 128, (layer.qweight.data_ptr(), layer.scales.data_ptr(), layer.zeros.data_ptr(), x.data_ptr(),
                          out.data_ptr(), out.data_ptr(), x.shape[0], d.out_features, np_, d.in_features,
                          x.stride(0), d.out_features, 0))


_V1: dict = {}


def _v1_kernel(device: int):
    if device not in _V1:
        defines = {"AR_BF16": 1, "AR_SYM": 1, "AR_GROUP": 128, "AR_MT": 1, "AR_KSPLIT": 4, "AR_DEPTH": 4}
        _V1[device] = compile_module(V1.read_text(), {"ar_w4_gemv": cuda_backend._GEMV_ARGS}, device,
                                     defines)["ar_w4_gemv"]
    return _V1[device]


def gemv_attrs(layer: CudaIntLinear, dtype: torch.dtype) -> dict:
    k = layer._kernels(dtype, 1, layer._ksplit())["ar_w4_gemv"]
    return {"regs": k.attribute(4), "local_bytes": k.attribute(3), "smem_bytes": k.attribute(1)}


class Run:
    """One shape's layers, inputs and bf16 baseline; ``case`` times one config."""

    def __init__(self, inp: int, n: int, dtype: torch.dtype, kchunks: set[int], timer: Timer) -> None:
        self.inp, self.n, self.dtype, self.timer = inp, n, dtype, timer
        self.ref = build_layer(TorchIntLinear, inp, n, 4, 128, dtype)
        self.w = self.ref.dequantize(dtype).t().contiguous()  # (in, out)
        self.layers = {kc: build_layer(CudaIntLinear, inp, n, 4, 128, dtype, kchunk=kc) for kc in kchunks}

    def floor(self) -> float:
        """The timer's floor: a graph of one tiny kernel (launch and event overhead, ~4 us on an H100)."""
        tiny = torch.zeros(1, device="cuda")
        return self.timer(graphed(lambda: tiny.add_(1)))

    def bf16(self, rows: int) -> float:
        x = torch.randn(rows, self.inp, device="cuda", dtype=self.dtype)
        return self.timer(graphed(lambda: torch.matmul(x, self.w)))

    def case(self, cfg: tuple, rows: int = 1) -> dict:
        layer = self.layers[cfg[0]]
        set_config(layer, cfg)
        x = torch.randn(rows, self.inp, device="cuda", dtype=self.dtype)
        with torch.no_grad():
            err = rel_err(layer(x), self.ref(x))
            us = self.timer(graphed(lambda: layer(x)))
        return {"kchunk": cfg[0], "ring": cfg[1], "spref": cfg[2], "ksplit": cfg[3], "depth": cfg[4], "rows": rows,
                "rel_err": err, "graph_us": us, **gemv_attrs(layer, self.dtype)}

    def v1(self) -> dict:
        layer = self.layers[0]
        x = torch.randn(1, self.inp, device="cuda", dtype=self.dtype)
        out = torch.empty(1, self.n, device="cuda", dtype=self.dtype)
        with torch.no_grad():
            v1_forward(layer, x, out)
            err = rel_err(out, self.ref(x))
            us = self.timer(graphed(lambda: v1_forward(layer, x, out)))
        return {"config": "v1", "rows": 1, "rel_err": err, "graph_us": us}

    def prefill(self, kchunk: int, rows: int) -> dict:
        layer = self.layers[kchunk]
        x = torch.randn(rows, self.inp, device="cuda", dtype=self.dtype)
        with torch.no_grad():
            err = rel_err(layer(x), self.ref(x))
            return {"kchunk": kchunk, "rows": rows, "rel_err": err, "us": self.timer(lambda: layer(x)),
                    "dequant_us": self.timer(lambda: layer.dequantize(self.dtype)),
                    "bf16_us": self.timer(lambda: torch.matmul(x, self.w)),
                    "dequant_exact": bool(torch.equal(layer.dequantize(self.dtype), self.ref.dequantize(self.dtype)))}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--shapes", nargs="+", default=["4096x14336", "14336x4096"], help="in x out")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16"))
    p.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument("--prefill-rows", type=int, default=2048)
    p.add_argument("--quick", action="store_true", help="four configs per shape")
    p.add_argument("--budget", type=float, default=None, help="seconds per shape for the config sweep")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    dtype = getattr(torch, a.dtype)
    timer = Timer(30, 5)
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "dtype": a.dtype, "shapes": []}

    def save() -> None:
        if a.json:
            pathlib.Path(a.json).write_text(json.dumps(result, indent=1))

    for si, shape in enumerate(a.shapes):
        inp, n = map(int, shape.split("x"))
        configs = QUICK if a.quick else MAIN if si == 0 else DOWN
        run = Run(inp, n, dtype, {c[0] for c in configs} | {0}, timer)
        res = {"shape": shape, "bf16_graph_us": run.bf16(1), "tiny_kernel_graph_us": run.floor(), "configs": [],
               "rows": [], "prefill": []}
        result["shapes"].append(res)
        print(f"{shape:<12} floor (a graph of one tiny kernel): {res['tiny_kernel_graph_us']:.1f} us", flush=True)
        if inp == 4096 and dtype == torch.bfloat16:
            res["v1"] = run.v1()
            print(f"{shape:<12} v1 (shipped before): {res['v1']['graph_us']:7.1f} us "
                  f"(bf16 {res['bf16_graph_us']:6.1f}) err {res['v1']['rel_err']:.1e}", flush=True)
        start = time.monotonic()
        for cfg in configs:
            if a.budget and time.monotonic() - start > a.budget:
                print(f"{shape:<12} budget spent: {len(res['configs'])} of {len(configs)} configs", flush=True)
                break
            try:
                r = run.case(cfg)
            except RuntimeError as e:  # e.g. a config over the shared-memory limit
                print(f"{shape:<12} {cfg}: {e}", flush=True)
                continue
            res["configs"].append(r)
            print(f"{shape:<12} kchunk {cfg[0]} ring {cfg[1]} spref {cfg[2]} ksplit {cfg[3]:>2} depth {cfg[4]:>2} "
                  f"regs {r['regs']:>3} smem {r['smem_bytes']:>5}: {r['graph_us']:7.1f} us "
                  f"(bf16 {res['bf16_graph_us']:6.1f}, {res['bf16_graph_us'] / r['graph_us']:.2f}x) "
                  f"err {r['rel_err']:.1e}", flush=True)
            save()
        res["bf16_graph_us_end"] = run.bf16(1)
        best = min(res["configs"], key=lambda c: c["graph_us"])
        res["best"] = best
        cfg = (best["kchunk"], best["ring"], best["spref"], best["ksplit"], best["depth"])
        print(f"{shape:<12} best {cfg}; bf16 at the end {res['bf16_graph_us_end']:.1f} us", flush=True)
        for m in a.rows:
            r = {**run.case(cfg, m), "bf16_graph_us": run.bf16(m)}
            res["rows"].append(r)
            print(f"{shape:<12} best, {m:>2} rows: {r['graph_us']:7.1f} us (bf16 {r['bf16_graph_us']:6.1f}, "
                  f"{r['bf16_graph_us'] / r['graph_us']:.2f}x) err {r['rel_err']:.1e}", flush=True)
            save()
        for kc in sorted({0, best["kchunk"]}):
            r = run.prefill(kc, a.prefill_rows)
            res["prefill"].append(r)
            print(f"{shape:<12} prefill {a.prefill_rows} rows, kchunk {kc}: {r['us']:7.1f} us (dequant "
                  f"{r['dequant_us']:.1f}, bf16 {r['bf16_us']:.1f}, {r['us'] / r['bf16_us']:.2f}x slower) "
                  f"err {r['rel_err']:.1e} exact dequant {r['dequant_exact']}", flush=True)
            save()
        del run
        torch.cuda.empty_cache()
    save()


if __name__ == "__main__":
    main()

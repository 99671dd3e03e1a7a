"""Sweep the cuda backend's GEMV: layout chunk, K split, step, batch rows; the kernel it replaced beside it.

    python benchmarks/kernel_bench_cuda_sweep.py [--shapes 4096x14336 14336x4096] [--json out.json] [--quick]
Each case: relative error against the torch backend, median time replayed from a CUDA graph with
the L2 flushed (kernel_bench.Timer), next to bf16 ``torch.matmul``. A config is (kchunk, ksplit,
depth): the layout's 64-k blocks per chunk (``CudaIntLinear.kchunk``), warps per 16 columns, 64-k
blocks per GEMV step. (The fourth pass also swept an L2 bulk prefetch and a third step buffer, both
slower: benchmarks/kernel_bench_notes.md, results/kernel_bench_cuda_sweep_h100_pass4_run2/3.json.) ``v3`` is the kernel shipped before this GEMV (results/kernel_bench_cuda_v3_gemv.cu:
a per-lane cp.async ring, scales converted in the kernel; 4 warps, 4 loads in flight) on the same
weight bytes, timed in the same run. Then the best config over 1-32 rows (and L2 hot), and prefill
repeated ``--prefill-reps`` times, its parts timed apart: the dequantization (and pass 4's, which
stored each lane's own chunks: results/kernel_bench_cuda_pass4.cu), cuBLAS on a dequantized weight
held fixed, bf16 ``torch.matmul`` on (in, out) and ``F.linear`` on (out, in), with the GPU's clocks,
power and throttle reasons (nvidia-smi) before and after. Used to pick ``CudaIntLinear``'s defaults (benchmarks/kernel_bench_notes.md).
The JSON is rewritten after every case, so a run cut short keeps what it measured.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import time

import torch
from kernel_bench import Timer, build_layer, graphed, rel_err
from torch.nn import functional as F

from ar_kernels import CudaIntLinear, TorchIntLinear
from ar_kernels.backends._nvrtc import compile_module
from ar_kernels.backends.cuda import _DEQUANT_ARGS

V3 = pathlib.Path(__file__).parent / "results" / "kernel_bench_cuda_v3_gemv.cu"
PASS4 = pathlib.Path(__file__).parent / "results" / "kernel_bench_cuda_pass4.cu"
V3_ARGS = "pppppp" + "iiiiiii"  # qrep scales zeros x bias out | M N Np K ldx ldo has_bias
# (kchunk, ksplit, depth); the first is the default
MAIN = [(2, 4, 2), (1, 4, 2), (1, 4, 1), (2, 8, 2), (2, 2, 2), (4, 4, 4), (2, 16, 2)]
DOWN = [(2, 16, 2), (2, 8, 2), (1, 16, 1)]
QUICK = [(2, 4, 2), (1, 4, 2)]


def set_config(layer: CudaIntLinear, cfg: tuple) -> None:
    _, layer.gemv_ksplit, layer.gemv_depth = cfg


_V3: dict = {}


def v3_forward(layer: CudaIntLinear, x: torch.Tensor, out: torch.Tensor) -> None:
    """The GEMV shipped before (4 warps per 16 columns, cp.async ring of depth 4) on the layer's buffers."""
    dev, p = layer.qweight.device.index or 0, layer.qweight.shape[2]
    if (dev, p) not in _V3:
        defines = {"AR_BF16": 1, "AR_SYM": 1, "AR_GROUP": 128, "AR_MT": 1, "AR_KSPLIT": 4, "AR_DEPTH": 4,
                   "AR_KCHUNK": p}
        _V3[dev, p] = compile_module(V3.read_text(), {"ar_w4_gemv": V3_ARGS}, dev, defines)["ar_w4_gemv"]
    d = layer.desc
    np_ = layer.scales.shape[1]
    _V3[dev, p](np_ // 16, 128, (layer.qweight.data_ptr(), layer.scales.data_ptr(), layer.zeros.data_ptr(),
                                 x.data_ptr(), out.data_ptr(), out.data_ptr(), x.shape[0], d.out_features, np_,
                                 d.in_features, x.stride(0), d.out_features, 0))


_K: dict = {}


def dequant_direct(layer: CudaIntLinear, dtype: torch.dtype) -> torch.Tensor:
    """Pass 4's dequantization kernel (each lane stored its own 16-byte chunks) on the layer's buffers."""
    dev, p, d = layer.qweight.device.index or 0, layer.qweight.shape[2], layer.desc
    if ("dq0", dev, p) not in _K:
        defines = {"AR_BF16": int(dtype == torch.bfloat16), "AR_SYM": int(layer.sym), "AR_GROUP": d.group,
                   "AR_KCHUNK": p}
        _K["dq0", dev, p] = compile_module(PASS4.read_text(), {"ar_w4_dequant": _DEQUANT_ARGS}, dev,
                                           defines)["ar_w4_dequant"]
    w = torch.empty((d.out_features, d.in_features), dtype=dtype, device=layer.qweight.device)
    np_ = layer.scales.shape[1]
    _K["dq0", dev, p](np_ // 16, 256, (layer.qweight.data_ptr(), layer.scales.data_ptr(), layer.zeros.data_ptr(),
                                       w.data_ptr(), d.out_features, np_, d.in_features))
    return w


def gpu_state() -> str:
    q = "clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active"
    try:
        return subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        return repr(e)


def gemv_attrs(layer: CudaIntLinear, dtype: torch.dtype) -> dict:
    k = layer._kernels(dtype, 1, layer._ksplit())["ar_w4_gemv"]
    return {"regs": k.attribute(4), "local_bytes": k.attribute(3), "smem_bytes": k.attribute(1)}


class Run:
    """One shape's layers, inputs and bf16 baseline; ``case`` times one config."""

    def __init__(self, inp: int, n: int, dtype: torch.dtype, kchunks: set[int], timer: Timer, hot: Timer) -> None:
        self.inp, self.n, self.dtype, self.timer, self.hot = inp, n, dtype, timer, hot
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

    def case(self, cfg: tuple, rows: int = 1, hot: bool = False) -> dict:
        layer = self.layers[cfg[0]]
        set_config(layer, cfg)
        x = torch.randn(rows, self.inp, device="cuda", dtype=self.dtype)
        with torch.no_grad():
            err = rel_err(layer(x), self.ref(x))
            us = self.timer(graphed(lambda: layer(x)))
            extra = {"hot_l2_graph_us": self.hot(graphed(lambda: layer(x)))} if hot else {}
        return {"kchunk": cfg[0], "ksplit": cfg[1], "depth": cfg[2], "rows": rows, "rel_err": err,
                "graph_us": us,
                **extra, **gemv_attrs(layer, self.dtype)}

    def v3(self, kchunk: int) -> dict:
        layer = self.layers[kchunk]
        x = torch.randn(1, self.inp, device="cuda", dtype=self.dtype)
        out = torch.empty(1, self.n, device="cuda", dtype=self.dtype)
        with torch.no_grad():
            v3_forward(layer, x, out)
            err = rel_err(out, self.ref(x))
            us = self.timer(graphed(lambda: v3_forward(layer, x, out)))
            hot = self.hot(graphed(lambda: v3_forward(layer, x, out)))
        return {"config": "v3", "kchunk": kchunk, "rows": 1, "rel_err": err, "graph_us": us, "hot_l2_graph_us": hot}

    def prefill(self, kchunk: int, rows: int, reps: int) -> dict:
        layer = self.layers[kchunk]
        x = torch.randn(rows, self.inp, device="cuda", dtype=self.dtype)
        w_nk = self.w.t().contiguous()  # (out, in) as the layer's dequantization gives it
        res: dict = {"kchunk": kchunk, "rows": rows, "gpu_before": gpu_state(), "reps": []}
        with torch.no_grad():
            res["rel_err"] = rel_err(layer(x), self.ref(x))
            want = self.ref.dequantize(self.dtype)
            res["dequant_exact"] = bool(torch.equal(layer.dequantize(self.dtype), want))
            res["dequant_direct_exact"] = bool(torch.equal(dequant_direct(layer, self.dtype), want))
            for _ in range(reps):
                r = {"bf16_us": self.timer(lambda: torch.matmul(x, self.w)),
                     "us": self.timer(lambda: layer(x)),
                     "dequant_us": self.timer(lambda: layer.dequantize(self.dtype)),
                     "dequant_direct_us": self.timer(lambda: dequant_direct(layer, self.dtype)),
                     "linear_fixed_w_us": self.timer(lambda: F.linear(x, w_nk)),
                     "direct_then_linear_us": self.timer(lambda: F.linear(x, dequant_direct(layer, self.dtype))),
                     "bf16_again_us": self.timer(lambda: torch.matmul(x, self.w))}
                r["ratio"] = r["us"] / r["bf16_us"]
                res["reps"].append(r)
                print("  prefill " + " ".join(f"{k} {v:.1f}" if k != "ratio" else f"ratio {v:.3f}"
                                              for k, v in r.items()), flush=True)
        res["gpu_after"] = gpu_state()
        return res


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--shapes", nargs="+", default=["4096x14336", "14336x4096"], help="in x out")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16"))
    p.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument("--prefill-rows", type=int, default=2048)
    p.add_argument("--prefill-reps", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="four configs per shape")
    p.add_argument("--budget", type=float, default=None, help="seconds per shape for the config sweep")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    dtype = getattr(torch, a.dtype)
    timer, hot = Timer(30, 5), Timer(30, 5, hot=True)
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "dtype": a.dtype, "shapes": []}

    def save() -> None:
        if a.json:
            pathlib.Path(a.json).write_text(json.dumps(result, indent=1))

    for si, shape in enumerate(a.shapes):
        inp, n = map(int, shape.split("x"))
        configs = QUICK if a.quick else MAIN if si == 0 else DOWN
        run = Run(inp, n, dtype, {c[0] for c in configs}, timer, hot)
        res = {"shape": shape, "bf16_graph_us": run.bf16(1), "tiny_kernel_graph_us": run.floor(), "configs": [],
               "rows": [], "prefill": []}
        result["shapes"].append(res)
        print(f"{shape:<12} floor (a graph of one tiny kernel): {res['tiny_kernel_graph_us']:.1f} us", flush=True)
        if dtype == torch.bfloat16:
            res["v3"] = run.v3(configs[0][0])
            print(f"{shape:<12} v3 (shipped before): {res['v3']['graph_us']:7.1f} us, L2 hot "
                  f"{res['v3']['hot_l2_graph_us']:.1f} (bf16 {res['bf16_graph_us']:6.1f}) err {res['v3']['rel_err']:.1e}",
                  flush=True)
        start = time.monotonic()
        for cfg in configs:
            if a.budget and time.monotonic() - start > a.budget:
                print(f"{shape:<12} budget spent: {len(res['configs'])} of {len(configs)} configs", flush=True)
                break
            try:
                r = run.case(cfg, hot=cfg == configs[0])
            except RuntimeError as e:  # e.g. a config over a resource limit
                print(f"{shape:<12} {cfg}: {e}", flush=True)
                continue
            res["configs"].append(r)
            print(f"{shape:<12} kchunk {cfg[0]} ksplit {cfg[1]:>2} depth {cfg[2]:>2} regs {r['regs']:>3} "
                  f"local {r['local_bytes']}: {r['graph_us']:7.1f} us (bf16 {res['bf16_graph_us']:6.1f}, "
                  f"{res['bf16_graph_us'] / r['graph_us']:.2f}x) err {r['rel_err']:.1e}"
                  + (f" L2 hot {r['hot_l2_graph_us']:.1f}" if "hot_l2_graph_us" in r else ""), flush=True)
            save()
        res["bf16_graph_us_end"] = run.bf16(1)
        best = min(res["configs"], key=lambda c: c["graph_us"])
        res["best"] = best
        cfg = (best["kchunk"], best["ksplit"], best["depth"])
        print(f"{shape:<12} best {cfg}; bf16 at the end {res['bf16_graph_us_end']:.1f} us", flush=True)
        for m in a.rows:
            r = {**run.case(cfg, m), "bf16_graph_us": run.bf16(m)}
            res["rows"].append(r)
            print(f"{shape:<12} best, {m:>2} rows: {r['graph_us']:7.1f} us (bf16 {r['bf16_graph_us']:6.1f}, "
                  f"{r['bf16_graph_us'] / r['graph_us']:.2f}x) err {r['rel_err']:.1e}", flush=True)
            save()
        print(f"{shape:<12} prefill {a.prefill_rows} rows, {a.prefill_reps} repetitions:", flush=True)
        r = run.prefill(configs[0][0], a.prefill_rows, a.prefill_reps)
        res["prefill"].append(r)
        print(f"{shape:<12} prefill err {r['rel_err']:.1e} exact dequant {r['dequant_exact']} "
              f"(pass 4's {r['dequant_direct_exact']}); GPU {r['gpu_before']} -> {r['gpu_after']}", flush=True)
        save()
        del run
        torch.cuda.empty_cache()
    save()


if __name__ == "__main__":
    main()

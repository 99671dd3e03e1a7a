"""Issue #6, pass 13: how fast could the GEMV be if it did not round each weight like the torch backend?

Timing bounds only; the variants' outputs are wrong on purpose (no scale, or one scale per word):
- ``shipped``: the exact dequantization (bf16: 3 ops per register pair, fp16: 2).
- ``scale_after``: ``q - z`` per pair (1 op) and one scale multiply per word. This models a kernel that applies
  the scale to each group's fp32 partial sums after the mma: its per-group fix-up costs about one op per word,
  and the scales are still read.
- ``no_scale``: ``q - z`` per pair only; the scales are not read.

    PYTHONPATH=packages/ar-kernels/src:benchmarks python benchmarks/kernel_bench_cuda_pass13.py --json out.json

``--pdl``: the shipped GEMV as a programmatic dependent launch (``cuLaunchKernelEx`` with programmatic stream
serialization): each block signals at its start that the next kernel may launch (``griddepcontrol.launch_dependents``),
issues its first weight loads, and only then waits for the previous kernel (``griddepcontrol.wait``) before it reads
x or writes anything. Timed as 8 distinct layers back to back in one CUDA graph (per layer), against the plain
launch and dense matmul the same way.

    PYTHONPATH=packages/ar-kernels/src:benchmarks python benchmarks/kernel_bench_cuda_pass13.py --pdl --json out.json

(``--pdl`` edits the GEMV source as it was before the package took the ``pf1`` variant: run it at commit f31a01e.)

Same layer, launch and timer as the shipped GEMV (rounds of CUDA-graph medians, L2 flushed); the dense baseline is
``x @ W.t()`` on the (out, in) weight in the activation dtype.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import pathlib
import struct

import torch
from kernel_bench_cuda_pass10 import KERNELS, substitute

SHIPPED_DEQUANT = """  a[0] = deq(lop3_and_or(q, 0x000F000Fu, AR_MAGIC), lo);
  a[1] = deq(lop3_and_or(q >> 4, 0x000F000Fu, AR_MAGIC), hi);
  a[2] = deq(lop3_and_or(q >> 8, 0x000F000Fu, AR_MAGIC), lo);
  a[3] = deq(lop3_and_or(q >> 12, 0x000F000Fu, AR_MAGIC), hi);
"""


def variant_source(name: str) -> str:
    src = KERNELS.read_text()
    if name == "shipped":
        return src
    first = ("fma2(add2(lop3_and_or(q, 0x000F000Fu, AR_MAGIC), lo.zz), lo.shi, AR_NEG0)" if name == "scale_after"
             else "add2(lop3_and_or(q, 0x000F000Fu, AR_MAGIC), lo.zz)")
    return substitute(src, SHIPPED_DEQUANT, f"""  a[0] = {first};
  a[1] = add2(lop3_and_or(q >> 4, 0x000F000Fu, AR_MAGIC), hi.zz);
  a[2] = add2(lop3_and_or(q >> 8, 0x000F000Fu, AR_MAGIC), lo.zz);
  a[3] = add2(lop3_and_or(q >> 12, 0x000F000Fu, AR_MAGIC), hi.zz);
""")


WAIT = '  asm volatile("griddepcontrol.wait;" ::: "memory");\n'


def pdl_source(mode: str = "loads") -> str:
    """The GEMV as a dependent launch. Before it waits for the previous kernel, each warp issues: ``loads``: its first
    step's weight and constant loads (into registers); ``pf<n>``: L2 prefetches of its first n 64-k blocks of weight
    (``pfall``: its whole slice); ``top``: nothing. Every x read and global write follows the wait."""
    src = substitute(KERNELS.read_text(), "  const int g = lane >> 2, c = lane & 3;\n  const int nkb = K >> 6,",
                     "  const int g = lane >> 2, c = lane & 3;\n  asm volatile(\"griddepcontrol.launch_dependents;\");\n"
                     "  const int nkb = K >> 6,")
    src = substitute(src, "  const u32 xbase = x_stage(x, M, K, ldx),", WAIT + "  const u32 xbase = x_stage(x, M, K, ldx),")
    src = substitute(src, "  __shared__ float red[AR_KSPLIT]", WAIT + "  __shared__ float red[AR_KSPLIT]")
    if mode == "loads":
        return substitute(src, "    gv.load_any(a, kb0);\n", "    gv.load_any(a, kb0);\n" + WAIT)
    before = ""
    if mode.startswith("pf"):
        n = "gv.kb1 - kb0" if mode == "pfall" else mode[2:]
        before = f"""  for (int kb = kb0; kb < min(kb0 + {n}, gv.kb1); ++kb)
#pragma unroll
    for (int t = 0; t < AR_NT; ++t)
      asm volatile("prefetch.global.L2 [%0];" :: "l"(at(gv.wq, (u32)kb / AR_KCHUNK, gv.cstride)
                                                    + (t * AR_KCHUNK + kb % AR_KCHUNK) * 512));
"""
    return substitute(src, "  if (kb0 < gv.kb1) {\n    Step a, b;\n", before + WAIT + "  if (kb0 < gv.kb1) {\n    Step a, b;\n")


class _LaunchAttribute(ctypes.Structure):  # CUlaunchAttribute: id, 4 bytes of padding, a 64-byte value union
    _fields_ = [("id", ctypes.c_int), ("pad", ctypes.c_char * 4), ("value", ctypes.c_int * 16)]


class _LaunchConfig(ctypes.Structure):  # CUlaunchConfig
    _fields_ = [("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3), ("shared", ctypes.c_uint),
                ("stream", ctypes.c_void_p), ("attrs", ctypes.POINTER(_LaunchAttribute)), ("nattrs", ctypes.c_uint)]


def launch_pdl(kernel, grid: int, block: int, args, smem: int) -> None:  # noqa: ANN001
    """``kernel`` (an ``ar_kernels`` NVRTC kernel) launched with programmatic stream serialization allowed."""
    from ar_kernels.backends._nvrtc import _check, _driver, _raw_stream
    attr = _LaunchAttribute(id=6)  # CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
    attr.value[0] = 1
    cfg = _LaunchConfig((grid, 1, 1), (block, 1, 1), smem, _raw_stream(kernel.device), ctypes.pointer(attr), 1)
    struct.pack_into(kernel._format, kernel._slots, 0, *args)
    _check(_driver().cuLaunchKernelEx(ctypes.byref(cfg), kernel.func, kernel._params, None), "cuLaunchKernelEx")


class GemvVariant:
    """The shipped layer's GEMV launch for ``rows`` rows of ``dtype``, on its kernel compiled from ``source``."""

    def __init__(self, layer, source: str, rows: int, dtype: torch.dtype, pdl: bool = False) -> None:  # noqa: ANN001
        from ar_kernels.backends._nvrtc import compile_module
        from ar_kernels.backends.cuda import _row_tiles, gemv_defines
        self.layer, self.dtype, self.pdl = layer, dtype, pdl
        nt, ks, depth, _ = layer._config(rows)
        _, self.grid, self.threads, self.smem = layer._plan(rows, dtype)[:4]
        d = gemv_defines(dtype == torch.bfloat16, layer.sym, layer.desc.group, _row_tiles(rows), ks, depth,
                         layer.qweight.shape[2], nt, self.smem > 0)
        self.k = compile_module(source, {"ar_w4_gemv": "ppppp" + "iiiiii"}, layer.qweight.device.index or 0,
                                d)["ar_w4_gemv"]
        self.k.allow_shared(self.smem)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        L, n, k = self.layer, self.layer.out_features, self.layer.in_features
        out = torch.empty(x.shape[0], n, dtype=x.dtype, device=x.device)
        args = (L.qweight.data_ptr(), L.gemv_params(x.dtype).data_ptr(), x.data_ptr(), out.data_ptr(), out.data_ptr(),
                x.shape[0], n, k, k, n, 0)
        if self.pdl:
            launch_pdl(self.k, self.grid, self.threads, args, self.smem)
        else:
            self.k(self.grid, self.threads, args, self.smem)
        return out


def main() -> None:
    from kernel_bench import Timer, build_layer, rel_err, summarize_variants, time_rounds

    from ar_kernels import CudaIntLinear, TorchIntLinear
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--json", default=None)
    ap.add_argument("--shapes", default="4096x14336,14336x4096")
    ap.add_argument("--dtypes", default="bfloat16,float16")
    ap.add_argument("--pdl", action="store_true", help="time programmatic dependent launches in 8-layer chains")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--pdl-modes", default="top,loads,pf2,pfall", help="see pdl_source")
    a = ap.parse_args()
    if a.pdl:
        return chains(a)
    timer = Timer(a.reps, 10)
    res: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "shapes": []}

    def save() -> None:
        if a.json:
            pathlib.Path(a.json).write_text(json.dumps(res, indent=1))

    for dt in (getattr(torch, d) for d in a.dtypes.split(",")):
        for shape in a.shapes.split(","):
            inp, n = map(int, shape.split("x"))
            ref = build_layer(TorchIntLinear, inp, n, 4, 128, dt)
            w_linear = ref.dequantize(dt).contiguous()  # (out, in): x @ W.t(), nn.Linear's layout
            layer = build_layer(CudaIntLinear, inp, n, 4, 128, dt)
            sres: dict = {"shape": shape, "dtype": str(dt), "variants": {}, "bf16_us": []}
            res["shapes"].append(sres)
            fns = {}
            with torch.no_grad():
                for v in ("shipped", "scale_after", "no_scale"):
                    var = GemvVariant(layer, variant_source(v), 1, dt)
                    x = torch.randn(1, inp, device="cuda", dtype=dt)
                    sres["variants"][v] = {"rel_err": {1: rel_err(var(x), ref(x))}, "graph_us": [],
                                           "regs": var.k.attribute(4)}
                    fns[v] = (var, x)
                time_rounds(f"{shape} {dt}", sres, fns, w_linear.t(), timer, a.rounds, save)
            summarize_variants(f"{shape} {dt}", sres, "rel_err")
            save()
            del layer, ref, w_linear
            torch.cuda.empty_cache()
    save()


def chains(a: argparse.Namespace) -> None:
    """Per-layer time of ``a.layers`` distinct layers in one CUDA graph: dense, shipped launch, PDL launch."""
    from kernel_bench import Timer
    timer = Timer(a.reps, 10)
    res: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "layers": a.layers, "shapes": []}
    for dt in (getattr(torch, d) for d in a.dtypes.split(",")):
        for shape in a.shapes.split(","):
            res["shapes"].append(chain_shape(a, timer, shape, dt))
            if a.json:
                pathlib.Path(a.json).write_text(json.dumps(res, indent=1))
            torch.cuda.empty_cache()


def chain_shape(a: argparse.Namespace, timer, shape: str, dt: torch.dtype) -> dict:  # noqa: ANN001
    from kernel_bench import build_layer, graphed, rel_err

    from ar_kernels import CudaIntLinear, TorchIntLinear
    inp, n = map(int, shape.split("x"))
    ref = build_layer(TorchIntLinear, inp, n, 4, 128, dt)
    layers = [build_layer(CudaIntLinear, inp, n, 4, 128, dt) for _ in range(a.layers)]
    dense = [ref.dequantize(dt).contiguous() for _ in range(a.layers)]
    x = torch.randn(1, inp, device="cuda", dtype=dt)
    shipped = variant_source("shipped")
    per_layer = {"shipped": [GemvVariant(L, shipped, 1, dt) for L in layers]}
    for mode in a.pdl_modes.split(","):
        src = pdl_source(mode)
        per_layer[f"pdl_{mode}"] = [GemvVariant(L, src, 1, dt, pdl=True) for L in layers]
    chained = {"dense": lambda: [torch.nn.functional.linear(x, w) for w in dense],
               **{k: (lambda fs=fs: [f(x) for f in fs]) for k, fs in per_layer.items()}}
    sres: dict = {"shape": shape, "dtype": str(dt), "us_per_layer": {k: [] for k in chained}}
    with torch.no_grad():
        want = ref(x)
        for k in per_layer:
            eager = max(rel_err(o, want) for o in chained[k]())
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outs = chained[k]()
            graph.replay()
            torch.cuda.synchronize()
            sres[f"rel_err_{k}"] = [eager, max(rel_err(o, want) for o in outs)]
            print(shape, dt, k, "rel err eager / graph", *sres[f"rel_err_{k}"], flush=True)
            del graph, outs
        for r in range(a.rounds):
            for k, f in chained.items():
                sres["us_per_layer"][k].append(timer(graphed(f)) / a.layers)
            print(f"{shape} {dt} round {r}: " + " ".join(f"{k} {v[-1]:.2f}" for k, v in sres["us_per_layer"].items()),
                  flush=True)
    return sres

if __name__ == "__main__":
    main()

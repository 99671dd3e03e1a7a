"""Benchmark ar-kernels' W4 layers against bf16 ``torch.matmul`` on one GPU; prints JSON and a table.

Decode (batch 1) and prefill (batch 2048) on a 4096 x 14336 layer (in x out), 4-bit, group 128,
as in a Llama-3-8B MLP up/gate projection. The bf16 baseline is ``torch.matmul`` in both weight layouts,
``x @ w`` with w (in, out) and ``x @ W.t()`` with W (out, in) as ``nn.Linear`` holds it; the faster of the two
counts (they differ: 46.5 vs 43.5 us at 1 row on an H100). Weights are random codes packed with
``ar_kernels.packing`` (timing does not depend on values), loaded as the checkpoint would be.
The L2 cache is flushed before every timed call (each layer's weight is read once per token in
a real model, and the 4-bit weight would otherwise sit in the H100's 50 MB L2). Decode is timed
eagerly and inside a CUDA graph (how servers run decode; it removes Python launch overhead).
Backends: triton, cuda (NVRTC tensor-core GEMV) and tinygemm (torch's int4 kernel, bf16 only), each
against the torch backend's output (relative error).

    python benchmarks/kernel_bench.py                       # defaults above
    python benchmarks/kernel_bench.py --in 4096 --out 4096 --bits 8 --json out.json
    python benchmarks/kernel_bench.py --decode-rows 1 16 --prefill-rows 2048 --triton-variants
Needs only torch, triton and ar_kernels.
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import statistics
import sys
from collections.abc import Callable

import torch

from ar_kernels import CudaIntLinear, LayerDesc, TinygemmIntLinear, TorchIntLinear, TritonIntLinear
from ar_kernels.packing import gptq


@functools.lru_cache(maxsize=2)
def _state_dict(inp: int, out: int, bits: int, group: int) -> dict:
    """Random codes and scales packed as a GPTQ sym checkpoint (built once per shape: packing is slow)."""
    g = torch.Generator().manual_seed(0)
    ng = -(-inp // (inp if group == -1 else group))
    codes = torch.randint(0, 2**bits, (out, inp), generator=g, dtype=torch.int32).to(torch.uint8)
    zero = torch.full((out, ng), 2 ** (bits - 1), dtype=torch.int32)
    return {"qweight": gptq.pack_qweight(codes, bits), "qzeros": gptq.pack_qzeros(zero, bits),
            "scales": (torch.rand(out, ng, generator=g) * 0.01 + 0.001).half().t().contiguous()}


def build_layer(cls: type, inp: int, out: int, bits: int, group: int, dtype: torch.dtype,
                **attrs: object) -> torch.nn.Module:
    """A QuantLinear of ``cls`` on CUDA holding random packed weights (sym, GPTQ layout); ``attrs`` are set
    on the layer before ``post_init`` (e.g. the cuda backend's ``kchunk``)."""
    desc = LayerDesc(in_features=inp, out_features=out, bits=bits, group_size=group, sym=True, dtype=dtype)
    layer = cls(desc, bias=False, device="meta")
    layer.load_state_dict({k: v.clone() for k, v in _state_dict(inp, out, bits, group).items()}, assign=True)
    layer = layer.cuda()
    for name, value in attrs.items():
        setattr(layer, name, value)
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


def time_rounds(shape: str, sres: dict, fns: dict, w: torch.Tensor, timer: Timer, rounds: int,
                save: Callable[[], None]) -> None:
    """Rounds of CUDA-graph medians: bf16 ``x @ w`` into ``sres["bf16_us"]``, then each variant of ``fns`` (name:
    (callable, its input x)) into ``sres["variants"][name]["graph_us"]``; a line and ``save()`` per round. The bf16
    input is the first variant's x."""
    x1 = next(iter(fns.values()))[1]
    for r in range(rounds):
        sres["bf16_us"].append(timer(graphed(lambda: torch.matmul(x1, w))))
        for v, (fn, x) in fns.items():
            sres["variants"][v]["graph_us"].append(timer(graphed(lambda fn=fn, x=x: fn(x))))
        line = " ".join(f"{v} {sres['variants'][v]['graph_us'][-1]:.2f}" for v in fns)
        print(f"{shape} round {r}: bf16 {sres['bf16_us'][-1]:.1f} | {line}", flush=True)
        save()


def bf16_weights(w_io: torch.Tensor) -> dict[str, torch.Tensor]:
    """The dense bf16 weight in both layouts: ``in_out`` (in, out) for ``x @ w``, ``linear`` (out, in) for ``x @ W.t()``."""
    return {"in_out": w_io, "linear": w_io.t().contiguous()}


def bf16_matmul(x: torch.Tensor, layout: str, w: torch.Tensor) -> torch.Tensor:
    return torch.matmul(x, w if layout == "in_out" else w.t())


def time_bf16(res: dict, key: str, timer: Timer, ws: dict[str, torch.Tensor], x: torch.Tensor, graph: bool) -> None:
    """``res[key]``: the faster layout's time of bf16 ``x @ W``; ``res[key + "_layouts"]``: both (eager or graph)."""
    wrap = graphed if graph else (lambda f: f)
    both = {k: timer(wrap(lambda k=k, w=w: bf16_matmul(x, k, w))) for k, w in ws.items()}
    res[key + "_layouts"], res[key] = both, min(both.values())


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def summarize_variants(shape: str, sres: dict, errors: str) -> float:
    """Median CUDA-graph time and speedup over bf16 of each variant of a sweep's shape (``sres``: ``bf16_us``
    and ``variants`` with ``graph_us``, the ``errors`` entry and optional ``l2_hot_us``, ``regs``,
    ``local_bytes``), stored in it and printed a line each; returns the bf16 median."""
    bf = statistics.median(sres["bf16_us"])
    for v, r in sres["variants"].items():
        if "graph_us" not in r:
            continue  # failed to build or run
        r["median_us"] = statistics.median(r["graph_us"])
        r["speedup"] = bf / r["median_us"]
        errs = r[errors].values() if isinstance(r[errors], dict) else r[errors]
        hot = f"  hot {r['l2_hot_us']:.2f}" if "l2_hot_us" in r else ""
        print(f"{shape} {v:<16} {r['median_us']:6.2f} us  {r['speedup']:.2f}x{hot}  err {max(errs):.1e}"
              f"  regs {r.get('regs')} local {r.get('local_bytes')}", flush=True)
    print(f"{shape} bf16 {bf:.2f} us", flush=True)
    return bf


def _backend_row(layer: torch.nn.Module, x: torch.Tensor, want: torch.Tensor, timer: Timer, base: dict,
                 graph: bool, hot: Timer | None) -> dict:
    r = {"rel_err_vs_torch": rel_err(layer(x), want), "us": timer(lambda: layer(x))}
    r["speedup_vs_bf16"] = base["bf16_matmul_us"] / r["us"]
    if graph:
        r["graph_us"] = timer(graphed(lambda: layer(x)))
        r["speedup_vs_bf16_graph"] = base["bf16_matmul_graph_us"] / r["graph_us"]
        if hot is not None:  # L2 not flushed: the 4-bit weight (29 MB) fits the H100's 50 MB L2
            r["hot_l2_graph_us"] = hot(graphed(lambda: layer(x)))
    return r


def bench_decode(rows: int, layers: dict, ref: torch.nn.Module, ws: dict[str, torch.Tensor], timer: Timer,
                 dtype: torch.dtype, hot: Timer | None, triton_variants: bool) -> dict:
    """A few rows: every backend eager and replayed from a CUDA graph, against bf16 ``torch.matmul``."""
    x = torch.randn(rows, ref.in_features, device="cuda", dtype=dtype)
    res: dict = {"rows": rows}
    with torch.no_grad():
        want = ref(x)
        time_bf16(res, "bf16_matmul_us", timer, ws, x, graph=False)
        time_bf16(res, "bf16_matmul_graph_us", timer, ws, x, graph=True)
        if hot is not None:
            time_bf16(res, "hot_l2_bf16_matmul_graph_us", hot, ws, x, graph=True)
        res["torch_backend_us"] = timer(lambda: ref(x))
        for name, layer in layers.items():
            res[name] = _backend_row(layer, x, want, timer, res, True, hot)
        tri = layers.get("triton")
        if triton_variants and tri is not None:
            tri.fast_gemv = True  # scale per group: exact fp32 dequant, not rounded like the torch backend
            res["triton_fast"] = _backend_row(tri, x, want, timer, res, True, None)
            tri.fast_gemv = False
    return res


def bench_chain(n: int, layers: dict, ref: torch.nn.Module, ws: dict[str, torch.Tensor], timer: Timer,
                dtype: torch.dtype) -> dict:
    """Decode as a model runs it: ``n`` distinct layers of the shape (own weights, same values) back to back
    in one CUDA graph, time per layer, against ``n`` distinct bf16 weights the same way. The kernel start
    latency a one-call graph pays (~4 us, measured as a graph of one tiny kernel) is then paid once per
    graph, as in a decode step, instead of once per layer."""
    x = torch.randn(1, ref.in_features, device="cuda", dtype=dtype)
    res: dict = {"rows": 1, "layers": n}
    with torch.no_grad():
        per_layer = {}
        for layout, w in ws.items():
            dense = [w.clone() for _ in range(n)]
            per_layer[layout] = timer(graphed(lambda d=dense, k=layout: [bf16_matmul(x, k, w) for w in d])) / n
            del dense
        res["bf16_matmul_graph_us_per_layer_layouts"] = per_layer
        res["bf16_matmul_graph_us_per_layer"] = min(per_layer.values())
        for name, layer in layers.items():
            copies = [copy.deepcopy(layer) for _ in range(n)]
            us = timer(graphed(lambda copies=copies: [c(x) for c in copies])) / n
            res[name] = {"graph_us_per_layer": us,
                         "speedup_vs_bf16_graph": res["bf16_matmul_graph_us_per_layer"] / us}
            del copies
        torch.cuda.empty_cache()
    return res


def bench_prefill(rows: int, layers: dict, ref: torch.nn.Module, ws: dict[str, torch.Tensor], timer: Timer,
                  dtype: torch.dtype, triton_variants: bool) -> dict:
    """Many rows: every backend's default path against bf16 ``torch.matmul`` (cuBLAS)."""
    x = torch.randn(rows, ref.in_features, device="cuda", dtype=dtype)
    res: dict = {"rows": rows}
    with torch.no_grad():
        want = ref(x)
        time_bf16(res, "bf16_matmul_us", timer, ws, x, graph=False)
        for name, layer in layers.items():
            r = _backend_row(layer, x, want, timer, res, False, None)
            r["ratio_to_bf16"] = r["us"] / res["bf16_matmul_us"]
            if name == "cuda":  # its large-batch path: this dequantization, then cuBLAS
                r["dequant_us"] = timer(lambda: layer.dequantize(dtype))  # noqa: B023
            res[name] = r
        tri = layers.get("triton")
        if triton_variants and tri is not None:
            default = tri.dequant_min_rows
            tri.dequant_min_rows = None  # the dequantize-in-register GEMM
            res["triton_fused_gemm"] = _backend_row(tri, x, want, timer, res, False, None)
            tri.dequant_min_rows = 1  # dequantize the weight once, then cuBLAS
            res["triton_dequant_cublas"] = _backend_row(tri, x, want, timer, res, False, None)
            tri.dequant_min_rows = default
    return res


def summary(result: dict) -> str:
    """A short table: per case and backend, time, ratio to bf16 and error against the torch backend."""
    lines = [f"{'case':<22}{'backend':<24}{'us':>9}{'bf16 us':>9}{'vs bf16':>9}{'rel err':>10}"]
    for kind in ("decode", "prefill"):
        for res in result[kind]:
            for name, r in res.items():
                if not isinstance(r, dict):
                    continue
                for mode, key, base in (("eager", "us", "bf16_matmul_us"), ("graph", "graph_us", "bf16_matmul_graph_us")):
                    if key in r:
                        lines.append(f"{kind + ' ' + str(res['rows']) + ' ' + mode:<22}{name:<24}{r[key]:>9.1f}"
                                     f"{res[base]:>9.1f}{res[base] / r[key]:>8.2f}x{r['rel_err_vs_torch']:>10.1e}")
    chain = result.get("chain")
    if chain:
        for name, r in chain.items():
            if isinstance(r, dict) and "graph_us_per_layer" in r:
                lines.append(f"{'decode 1, ' + str(chain['layers']) + ' layers/graph':<22}{name:<24}"
                             f"{r['graph_us_per_layer']:>9.1f}{chain['bf16_matmul_graph_us_per_layer']:>9.1f}"
                             f"{r['speedup_vs_bf16_graph']:>8.2f}x{'':>10}")
    return "\n".join(lines)


LINEARS = {"triton": TritonIntLinear, "cuda": CudaIntLinear, "tinygemm": TinygemmIntLinear}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--in", dest="inp", type=int, default=4096)
    p.add_argument("--out", type=int, default=14336)
    p.add_argument("--bits", type=int, default=4, choices=(2, 4, 8))
    p.add_argument("--group", type=int, default=128)
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16"))
    p.add_argument("--backends", nargs="+", default=list(LINEARS), choices=list(LINEARS))
    p.add_argument("--decode-rows", type=int, nargs="+", default=[1])
    p.add_argument("--prefill-rows", type=int, nargs="+", default=[2048])
    p.add_argument("--triton-variants", action="store_true", help="also time triton's fast GEMV, fused GEMM and "
                                                                   "dequant + cuBLAS paths")
    p.add_argument("--cuda-attrs", nargs="+", default=[], metavar="NAME=INT",
                   help="CudaIntLinear attributes for the cuda layer, e.g. kchunk=1 gemv_ksplit=8 gemv_depth=2")
    p.add_argument("--chain", type=int, default=0, metavar="N",
                   help="also time 1-row decode as N distinct layers back to back in one graph (per layer)")
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--json", default=None, help="also write the result to this file")
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print(json.dumps({"error": "CUDA is not available"}))
        return 1
    dtype = getattr(torch, a.dtype)
    ref = build_layer(TorchIntLinear, a.inp, a.out, a.bits, a.group, dtype)
    layers = {}
    for name in a.backends:
        spec = LINEARS[name].spec
        if spec.reasons(ref.desc, "cuda"):
            continue  # e.g. tinygemm with fp16, cuda with 8 bits
        attrs = dict((k, int(v)) for k, v in (kv.split("=") for kv in a.cuda_attrs)) if name == "cuda" else {}
        layers[name] = build_layer(LINEARS[name], a.inp, a.out, a.bits, a.group, dtype, **attrs)
    ws = bf16_weights(ref.dequantize(dtype).t().contiguous())
    timer, hot = Timer(a.reps, a.warmup), Timer(a.reps, a.warmup, hot=True)
    import triton
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
              "shape_in_out": [a.inp, a.out], "bits": a.bits, "group": a.group, "dtype": a.dtype,
              "cuda_attrs": a.cuda_attrs,
              "decode": [bench_decode(r, layers, ref, ws, timer, dtype, hot, a.triton_variants)
                         for r in a.decode_rows],
              "prefill": [bench_prefill(r, layers, ref, ws, timer, dtype, a.triton_variants)
                          for r in a.prefill_rows]}
    if a.chain:
        result["chain"] = bench_chain(a.chain, layers, ref, ws, timer, dtype)
    text = json.dumps(result, indent=2)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text)
    else:
        print(text)
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

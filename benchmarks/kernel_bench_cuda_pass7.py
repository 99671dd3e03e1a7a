"""Issue #6, pass 7: fewer SM instructions per weight in the decode GEMV, variants against the shipped kernel.

    PYTHONPATH=packages/ar-kernels/src:benchmarks python benchmarks/kernel_bench_cuda_pass7.py --json out.json
A variant is (kchunk, ksplit, depth, nt, nacc, minb) of the GEMV in the shipped ``_w4_mma.cu`` (which
kept the pass's AR_NT: ``nt`` adjacent 16-column tiles per warp sharing the x loads, the
addresses and the loop; ``nacc`` accumulator sets; ``minb`` the ``__launch_bounds__`` blocks per SM, which
bounds the registers), launched on a ``CudaIntLinear``'s buffers with ``tiles / nt`` blocks (``base`` is the
shipped layer itself). All are timed in ``--rounds`` rounds (the configs in turn, bf16 ``torch.matmul`` in
each round), CUDA graph, L2 flushed (kernel_bench.Timer); each one's relative error against the torch
backend at 1, 5 and 8 rows, and the dequantization kernel on each layout bit for bit. The JSON is
rewritten after every round.
"""
from __future__ import annotations

import argparse
import json
import pathlib

import torch
from kernel_bench import Timer, build_layer, graphed, rel_err, summarize_variants

from ar_kernels import CudaIntLinear, TorchIntLinear
from ar_kernels.backends._nvrtc import compile_module
from ar_kernels.backends.cuda import _GEMV_ARGS, _source

# name: (kchunk, ksplit, depth, nt, nacc, minb); "base" is the shipped layer
VARIANTS = {
    "base": (2, 4, 2, 1, 2, 8),
    "p7_nt1": (2, 4, 2, 1, 2, 8),
    "nt2_d2_ks4": (2, 4, 2, 2, 2, 4),
    "nt2_d2_ks4_m5": (2, 4, 2, 2, 2, 5),
    "nt2_d1_ks4": (1, 4, 1, 2, 1, 8),
    "nt2_d1_ks8": (1, 8, 1, 2, 1, 4),
    "nt4_d1_ks8": (1, 8, 1, 4, 2, 2),
    "nt4_d1_ks4": (1, 4, 1, 4, 2, 4),
}
DOWN = {"base": (2, 16, 2, 1, 2, 8), "nt2_d2_ks8": (2, 8, 2, 2, 2, 2), "nt2_d1_ks16": (1, 16, 1, 2, 1, 2)}


class Variant:
    """The pass-7 GEMV of one config on a layer's buffers (the layer's own kernel where ``base``)."""

    def __init__(self, layer: CudaIntLinear, cfg: tuple, base: bool) -> None:
        kc, self.ksplit, depth, self.nt, nacc, minb = cfg
        self.layer, self.base = layer, base
        if base:
            layer.gemv_ksplit, layer.gemv_depth = self.ksplit, depth
            self.k = layer._kernels(torch.bfloat16, 1, self.ksplit)["ar_w4_gemv"]
            return
        if (layer.scales.shape[1] // 16) % self.nt:
            raise ValueError("tiles must be a multiple of nt")
        defines = {"AR_BF16": 1, "AR_SYM": int(layer.sym), "AR_GROUP": layer.desc.group, "AR_MT": 1,
                   "AR_KSPLIT": self.ksplit, "AR_DEPTH": depth, "AR_KCHUNK": layer.qweight.shape[2],
                   "AR_MINB": minb, "AR_NT": self.nt, "AR_NACC": nacc}
        self.k = compile_module(_source(), {"ar_w4_gemv": _GEMV_ARGS}, layer.qweight.device.index or 0,
                                defines)["ar_w4_gemv"]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.base:
            return self.layer(x)
        L, d = self.layer, self.layer.desc
        out = torch.empty(x.shape[0], d.out_features, dtype=x.dtype, device=x.device)
        self.k(L.scales.shape[1] // 16 // self.nt, 32 * self.ksplit,
               (L.qweight.data_ptr(), L.gemv_params(x.dtype).data_ptr(), x.data_ptr(), out.data_ptr(), out.data_ptr(),
                x.shape[0], d.out_features, d.in_features, x.stride(0), d.out_features, 0))
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--no-down", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    dt = torch.bfloat16
    timer, hot = Timer(a.reps, 10), Timer(a.reps, 10, hot=True)
    res: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "shapes": []}

    def save() -> None:
        if a.json:
            pathlib.Path(a.json).write_text(json.dumps(res, indent=1))

    for shape, variants in (("4096x14336", VARIANTS), ("14336x4096", DOWN)):
        if shape != "4096x14336" and a.no_down:
            continue
        inp, n = map(int, shape.split("x"))
        ref = build_layer(TorchIntLinear, inp, n, 4, 128, dt)
        w = ref.dequantize(dt).t().contiguous()
        layers = {kc: build_layer(CudaIntLinear, inp, n, 4, 128, dt, kchunk=kc) for kc in {c[0] for c in variants.values()}}
        want_w = ref.dequantize(dt)
        sres: dict = {"shape": shape, "variants": {}, "bf16_us": [], "dequant_exact": {}}
        res["shapes"].append(sres)
        with torch.no_grad():
            for kc, layer in layers.items():
                sres["dequant_exact"][str(kc)] = bool(torch.equal(layer.dequantize(dt), want_w))
            fns = {}
            for v, cfg in variants.items():
                try:
                    layer = Variant(layers[cfg[0]], cfg, v == "base")
                    errs = []
                    for rows in (1, 5, 8):
                        x = torch.randn(rows, inp, device="cuda", dtype=dt)
                        errs.append(rel_err(layer(x), ref(x)))
                except Exception as e:  # noqa: BLE001 - a failing variant is reported, the others still run
                    sres["variants"][v] = {"cfg": cfg, "error": repr(e)}
                    print(f"{shape} {v}: {e!r}", flush=True)
                    continue
                sres["variants"][v] = {"cfg": cfg, "rel_err_1_5_8": errs, "graph_us": [],
                                       "regs": layer.k.attribute(4), "local_bytes": layer.k.attribute(3)}
                fns[v] = (cfg, layer, torch.randn(1, inp, device="cuda", dtype=dt))
            x1 = torch.randn(1, inp, device="cuda", dtype=dt)
            for r in range(a.rounds):
                sres["bf16_us"].append(timer(graphed(lambda x1=x1, w=w: torch.matmul(x1, w))))
                for v, (cfg, layer, x) in fns.items():
                    if v == "base":
                        layer.layer.gemv_ksplit, layer.layer.gemv_depth = cfg[1], cfg[2]
                    sres["variants"][v]["graph_us"].append(timer(graphed(lambda: layer(x))))  # noqa: B023
                line = " ".join(f"{v} {sres['variants'][v]['graph_us'][-1]:.2f}" for v in fns)
                print(f"{shape} round {r}: bf16 {sres['bf16_us'][-1]:.1f} | {line}", flush=True)
                save()
            for v, (cfg, layer, x) in fns.items():  # weight hot in L2: SM-side time
                if v == "base":
                    layer.layer.gemv_ksplit, layer.layer.gemv_depth = cfg[1], cfg[2]
                sres["variants"][v]["l2_hot_us"] = hot(graphed(lambda: layer(x)))  # noqa: B023
        summarize_variants(shape, sres, "rel_err_1_5_8")
        print(f"{shape} dequant exact: {sres['dequant_exact']}", flush=True)
        save()
        del layers, ref, w
        torch.cuda.empty_cache()
    save()


if __name__ == "__main__":
    main()

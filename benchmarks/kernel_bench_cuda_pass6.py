"""Issue #6, pass 6: the decode GEMV's DRAM access order, variants against the shipped kernel on the same weight.

    PYTHONPATH=packages/ar-kernels/src:benchmarks python benchmarks/kernel_bench_cuda_pass6.py --json out.json
A variant is (kchunk, ksplit, depth, interleave, l2_hint) of the GEMV in results/kernel_bench_cuda_pass6_ilv.cu
(the shipped ``_w4_mma.cu`` plus AR_ILV / AR_L2HINT and chunks larger than a step; not shipped: no variant
won), launched on a ``CudaIntLinear``'s buffers (``base`` is the shipped layer itself). ``interleave`` gives warp w of a block the steps w, w + ksplit, ... instead of a K slice, so that a block's
warps read adjacent k steps at once (with kchunk = ksplit * depth one contiguous span per block and the
whole grid one span per round); kchunk 64 (= K / 64 here) is the tile-major layout. ``pers_tm``: pass 5's
persistent GEMV (results/kernel_bench_cuda_pass6_persistent_tm.cu) on the tile-major layout, so that each
warp's run is one contiguous range. All are timed in ``--rounds`` rounds (the configs in turn, bf16
``torch.matmul`` in each round), CUDA graph, L2 flushed (kernel_bench.Timer); each one's relative error
against the torch backend at 1, 5 and 8 rows, and the dequantization kernel on each layout bit for bit.
The JSON is rewritten after every round.
"""
from __future__ import annotations

import argparse
import json
import pathlib

import torch
from kernel_bench import Timer, build_layer, graphed, rel_err, summarize_variants

from ar_kernels import CudaIntLinear, TorchIntLinear
from ar_kernels.backends._nvrtc import compile_module
from ar_kernels.backends.cuda import _GEMV_ARGS, min_blocks

PERS = pathlib.Path(__file__).parent / "results" / "kernel_bench_cuda_pass6_persistent_tm.cu"
PERS_ARGS = "ppppppp" + "iiiiii"  # qrep params x bias out ws cnt | M N K ldx ldo has_bias
# name: (kchunk, ksplit, depth, interleave, l2_hint); the first is the shipped default
VARIANTS = {
    "base": (2, 4, 2, 0, 0),
    "ilv_p2": (2, 4, 2, 1, 0),
    "ilv_p8": (8, 4, 2, 1, 0),
    "ilv_p8_l2h": (8, 4, 2, 1, 1),
    "base_l2h": (2, 4, 2, 0, 1),
    "tm": (64, 4, 2, 0, 0),
    "tm_ilv": (64, 4, 2, 1, 0),
    "ilv_p4": (4, 4, 1, 1, 0),
    "ilv_p16_ks8": (16, 8, 2, 1, 0),
}
DOWN = {"base": (2, 16, 2, 0, 0), "ilv_p8": (8, 16, 2, 1, 0), "ilv_p32": (32, 16, 2, 1, 0)}


ILV = pathlib.Path(__file__).parent / "results" / "kernel_bench_cuda_pass6_ilv.cu"


class Variant:
    """The pass-6 GEMV of one config on a layer's buffers (the layer's own kernel where ``base``)."""

    def __init__(self, layer: CudaIntLinear, cfg: tuple, base: bool) -> None:
        kc, self.ksplit, depth, ilv, l2h = cfg
        self.layer, self.base = layer, base
        if base:
            layer.gemv_ksplit, layer.gemv_depth = self.ksplit, depth
            self.k = layer._kernels(torch.bfloat16, 1, self.ksplit)["ar_w4_gemv"]
            return
        defines = {"AR_BF16": 1, "AR_SYM": int(layer.sym), "AR_GROUP": layer.desc.group, "AR_MT": 1,
                   "AR_KSPLIT": self.ksplit, "AR_DEPTH": depth, "AR_KCHUNK": layer.qweight.shape[2],
                   "AR_MINB": min_blocks(1, self.ksplit, layer.desc.group, depth), "AR_ILV": ilv, "AR_L2HINT": l2h}
        self.k = compile_module(ILV.read_text(), {"ar_w4_gemv": _GEMV_ARGS}, layer.qweight.device.index or 0,
                                defines)["ar_w4_gemv"]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.base:
            return self.layer(x)
        L, d = self.layer, self.layer.desc
        out = torch.empty(x.shape[0], d.out_features, dtype=x.dtype, device=x.device)
        self.k(L.scales.shape[1] // 16, 32 * self.ksplit,
               (L.qweight.data_ptr(), L.gemv_params(x.dtype).data_ptr(), x.data_ptr(), out.data_ptr(), out.data_ptr(),
                x.shape[0], d.out_features, d.in_features, x.stride(0), d.out_features, 0))
        return out


class Persistent:
    """Pass 5's persistent GEMV (grid 132 x blocks per SM) on a layer's buffers, with its workspace."""

    def __init__(self, layer: CudaIntLinear, bwarps: int, sm_warps: int) -> None:
        dev, p = layer.qweight.device.index or 0, layer.qweight.shape[2]
        defines = {"AR_BF16": 1, "AR_SYM": int(layer.sym), "AR_GROUP": layer.desc.group, "AR_MT": 1,
                   "AR_BWARPS": bwarps, "AR_DEPTH": 2, "AR_KCHUNK": p, "AR_MINB": sm_warps // bwarps}
        self.k = compile_module(PERS.read_text(), {"ar_w4_gemv": PERS_ARGS}, dev, defines)["ar_w4_gemv"]
        sms = torch.cuda.get_device_properties(dev).multi_processor_count
        tiles = layer.scales.shape[1] // 16
        self.grid, self.block = sms * (sm_warps // bwarps), 32 * bwarps
        self.grid = min(self.grid, tiles * (layer.desc.in_features // 128))
        self.ws = torch.empty(self.grid * 2 * 4 * 32, dtype=torch.float32, device="cuda")
        self.cnt = torch.zeros(tiles, dtype=torch.int32, device="cuda")
        self.layer = layer

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        d, L = self.layer.desc, self.layer
        out = torch.empty(x.shape[0], d.out_features, dtype=x.dtype, device=x.device)
        self.k(self.grid, self.block, (L.qweight.data_ptr(), L.gemv_params(x.dtype).data_ptr(), x.data_ptr(),
                                       out.data_ptr(), out.data_ptr(), self.ws.data_ptr(), self.cnt.data_ptr(),
                                       x.shape[0], d.out_features, d.in_features, x.stride(0), d.out_features, 0))
        return out


def attrs(v: Variant) -> dict:
    return {"regs": v.k.attribute(4), "local_bytes": v.k.attribute(3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--no-down", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    dt = torch.bfloat16
    timer = Timer(a.reps, 10)
    res: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "shapes": []}

    def save() -> None:
        if a.json:
            pathlib.Path(a.json).write_text(json.dumps(res, indent=1))

    for shape, variants in (("4096x14336", VARIANTS), ("14336x4096", DOWN)):
        if shape != "4096x14336" and a.no_down:
            continue
        inp, n = map(int, shape.split("x"))
        names = [v for v in variants if a.only is None or v in a.only or v == "base"]
        ref = build_layer(TorchIntLinear, inp, n, 4, 128, dt)
        w = ref.dequantize(dt).t().contiguous()
        layers = {kc: build_layer(CudaIntLinear, inp, n, 4, 128, dt, kchunk=kc) for kc in {variants[v][0] for v in names}}
        want_w = ref.dequantize(dt)
        sres: dict = {"shape": shape, "variants": {}, "bf16_us": [], "dequant_exact": {}}
        res["shapes"].append(sres)
        with torch.no_grad():
            for kc, layer in layers.items():
                sres["dequant_exact"][str(kc)] = bool(torch.equal(layer.dequantize(dt), want_w))
            fns = {}
            for v in names:
                cfg = variants[v]
                layer = Variant(layers[cfg[0]], cfg, v == "base")
                errs = []
                for rows in (1, 5, 8):
                    x = torch.randn(rows, inp, device="cuda", dtype=dt)
                    errs.append(rel_err(layer(x), ref(x)))
                sres["variants"][v] = {"cfg": cfg, "kchunk_actual": layer.layer.qweight.shape[2],
                                       "rel_err_1_5_8": errs, "graph_us": [], **attrs(layer)}
                x1 = torch.randn(1, inp, device="cuda", dtype=dt)
                fns[v] = (cfg, layer, x1)
            if shape == "4096x14336" and 64 in layers and (a.only is None or "pers_tm" in a.only):
                pers = Persistent(layers[64], 8, 32)
                x1 = torch.randn(1, inp, device="cuda", dtype=dt)
                errs = [rel_err(pers(x1), ref(x1))]
                sres["variants"]["pers_tm"] = {"cfg": "persistent, 8 warps x 4 blocks per SM, tile-major",
                                               "rel_err_1_5_8": errs, "graph_us": []}
                fns["pers_tm"] = (None, pers, x1)
            x1 = torch.randn(1, inp, device="cuda", dtype=dt)
            for r in range(a.rounds):
                sres["bf16_us"].append(timer(graphed(lambda x1=x1, w=w: torch.matmul(x1, w))))
                for v, (cfg, layer, x) in fns.items():
                    if v == "base":
                        layer.layer.gemv_ksplit, layer.layer.gemv_depth = cfg[1], cfg[2]
                    us = timer(graphed(lambda: layer(x)))  # noqa: B023
                    sres["variants"][v]["graph_us"].append(us)
                line = " ".join(f"{v} {sres['variants'][v]['graph_us'][-1]:.1f}" for v in fns)
                print(f"{shape} round {r}: bf16 {sres['bf16_us'][-1]:.1f} | {line}", flush=True)
                save()
            if "pers_tm" in fns:
                p = fns["pers_tm"][1]
                sres["variants"]["pers_tm"]["rel_err_after"] = rel_err(p(x1), ref(x1))
        summarize_variants(shape, sres, "rel_err_1_5_8")
        print(f"{shape} dequant exact: {sres['dequant_exact']}", flush=True)
        save()
        del layers, ref, w
        torch.cuda.empty_cache()
    save()


if __name__ == "__main__":
    main()

"""Issue #6, pass 10: a warp-specialized GEMV (one producer lane streams the weight into a shared-memory ring by
TMA bulk copies, the other warps only compute), and the shipped GEMV with per-lane L2 prefetches, against the
shipped GEMV and bf16 ``torch.matmul``.

    PYTHONPATH=packages/ar-kernels/src:benchmarks python benchmarks/kernel_bench_cuda_pass10.py --json out.json
    PYTHONPATH=packages/ar-kernels/src:benchmarks python benchmarks/kernel_bench_cuda_pass10.py --compile-only
    ncu --kernel-name regex:ar_w4_gemv --launch-skip 2 --launch-count 1 ... \
        python benchmarks/kernel_bench_cuda_pass10.py --profile ws7_k4_s4_n8_c4_np

The warp-specialized kernel is ``results/kernel_bench_cuda_pass10_ws.cu`` appended to the shipped ``_w4_mma.cu``; a
variant is its macros (tiles per block ``AR_WT``, consumer warps per tile ``AR_KS2``, 64-k blocks per stage
``AR_SB``, stages ``AR_NS``, the layout's ``kchunk``) and two timing bounds (wrong results): ``_ro`` consumers only
load from the ring, ``_np`` no copies and no waits (the consumers' math alone). ``pf<n>``: the shipped GEMV whose
lanes also ``prefetch.global.L2`` their weight words n steps ahead. Timing as pass 8 (rounds of CUDA-graph medians,
L2 flushed, bf16 in each round); relative error against the torch backend at 1, 5 and 8 rows. ``--compile-only``
builds every variant for sm_90 (NVRTC only, no GPU).
"""
from __future__ import annotations

import argparse
import json
import pathlib

import torch

KERNELS = pathlib.Path(__file__).resolve().parents[1] / "packages/ar-kernels/src/ar_kernels/backends/_w4_mma.cu"
WS = pathlib.Path(__file__).with_name("results") / "kernel_bench_cuda_pass10_ws.cu"
ARGS = "pppp" + "iiiii"  # qrep params x out | M N K ldx ldo

# name: (tiles per block, consumer warps per tile, blocks per stage, stages[, layout kchunk[, math[, noprod]]]);
# math 0: the consumers only load (the pipeline's bound); noprod 1: no copies, no waits (the math's bound)
UP = {  # 896 tiles: 128 blocks of 7 (calls 1-3 and 5 ran more stage shapes: results/kernel_bench_cuda_pass10_call*.json)
    "ws7_k2_s4_n4": (7, 2, 4, 4),
    "ws7_k2_s4_n8_c4": (7, 2, 4, 8, 4),
    "ws7_k4_s4_n8_c4": (7, 4, 4, 8, 4),
    "ws7_k2_s4_n8_c4_ro": (7, 2, 4, 8, 4, 0),
    "ws7_k2_s4_n8_c4_np": (7, 2, 4, 8, 4, 1, 1),
    "ws7_k4_s4_n8_c4_np": (7, 4, 4, 8, 4, 1, 1),
}
DOWN: dict = {}  # x of 8 rows at K = 14336 does not fit beside the ring
SQUARE = {"ws2_k8_s8_n4": (2, 8, 8, 4)}  # call 1: 11.87 vs 8.99 us shipped
PF = {"pf2": 2, "pf3": 3, "pf4": 4, "pf6": 6}  # run on every shape (call 4)

def substitute(src: str, old: str, new: str) -> str:
    if src.count(old) != 1:
        raise ValueError(f"the shipped source changed: {old[:60]!r}")
    return src.replace(old, new)


def prefetch_source(ahead: int, level: str = "L2", allocate: bool = False, per_line: bool = False) -> str:
    """The shipped GEMV whose lanes also prefetch (``prefetch.global.<level>``, no register, no scoreboard) their
    weight words ``ahead`` steps ahead (the register double buffer holds only the next step's). ``allocate``: the
    weight loads allocate in L1, to hit lines prefetched there; ``per_line``: one lane per 128-byte line issues it
    (lanes 8 apart), not every lane for its 16 bytes."""
    s = KERNELS.read_text()
    s = substitute(s, "\n  // Loads step kb where it is (partly) in the warp's slice.", """
  __device__ __forceinline__ void prefetch_step(int kb) const {
    if (kb + AR_DEPTH > kb1 || (PER_LINE && (threadIdx.x & 7))) return;
#pragma unroll
    for (int h = 0; h < AR_DEPTH / AR_KCHUNK; ++h) {
      const char* w = at(wq, (u32)kb / AR_KCHUNK + h, cstride);
#pragma unroll
      for (int i = 0; i < AR_KCHUNK; ++i)
#pragma unroll
        for (int t = 0; t < AR_NT; ++t) asm volatile("prefetch.global.LEVEL [%0];" :: "l"(w + (t * AR_KCHUNK + i) * 512));
    }
  }

  // Loads step kb where it is (partly) in the warp's slice.""")
    s = substitute(s, "    load_any(nxt, kb + AR_DEPTH);\n", f"    load_any(nxt, kb + AR_DEPTH);\n    prefetch_step(kb + {ahead} * AR_DEPTH);\n")
    s = s.replace("prefetch.global.LEVEL", f"prefetch.global.{level}").replace("PER_LINE", str(int(per_line)))
    if allocate:
        s = substitute(s, 'asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"', 'asm("ld.global.nc.v4.u32 {%0,%1,%2,%3}, [%4];"')
    return s


class SourceVariant:
    """The shipped layer's launch for ``rows`` rows, on its kernel compiled from another source."""

    def __init__(self, layer, source: str, rows: int) -> None:  # noqa: ANN001
        from ar_kernels.backends._nvrtc import compile_module
        from ar_kernels.backends.cuda import _row_tiles, gemv_defines
        self.layer = layer
        nt, ks, depth, _ = layer._config(rows)
        _, self.grid, self.threads, self.smem = layer._plan(rows, torch.bfloat16)[:4]
        d = gemv_defines(True, layer.sym, layer.desc.group, _row_tiles(rows), ks, depth, layer.qweight.shape[2], nt,
                         self.smem > 0)
        self.k = compile_module(source, {"ar_w4_gemv": "ppppp" + "iiiiii"}, layer.qweight.device.index or 0,
                                d)["ar_w4_gemv"]
        self.k.allow_shared(self.smem)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        L, n, k = self.layer, self.layer.out_features, self.layer.in_features
        out = torch.empty(x.shape[0], n, dtype=x.dtype, device=x.device)
        self.k(self.grid, self.threads, (L.qweight.data_ptr(), L.gemv_params(x.dtype).data_ptr(), x.data_ptr(),
                                         out.data_ptr(), out.data_ptr(), x.shape[0], n, k, k, n, 0), self.smem)
        return out


def defines(cfg: tuple, sym: bool, group: int, k: int = 4096) -> dict:
    wt, ks2, sb, ns = cfg[:4]
    kchunk, math, noprod = (cfg[4] if len(cfg) > 4 else 1), (cfg[5] if len(cfg) > 5 else 1), (cfg[6] if len(cfg) > 6 else 0)
    return {"AR_BF16": 1, "AR_SYM": int(sym), "AR_GROUP": group, "AR_MT": 1, "AR_XSMEM": 1, "AR_KCHUNK": kchunk,
            "AR_DEPTH": kchunk, "AR_WT": wt, "AR_KS2": ks2, "AR_SB": sb, "AR_NS": ns, "AR_WS_MATH": math, "AR_WS_FULL": int(k // 64 % sb == 0),
            "AR_WS_NOPROD": noprod}


def source() -> str:
    return KERNELS.read_text() + "\n" + WS.read_text()


def stage_bytes(cfg: tuple, group: int, pw: int = 2) -> int:
    wt, _, sb = cfg[:3]
    return sb * wt * 512 + max(1, sb * 64 // group) * wt * 8 * pw * 4


class Variant:
    def __init__(self, layer, cfg: tuple) -> None:  # noqa: ANN001
        from ar_kernels.backends._nvrtc import compile_module
        self.layer, self.cfg = layer, cfg
        tiles = layer.qweight.shape[1]
        if tiles % cfg[0]:
            raise ValueError(f"{tiles} tiles do not split into blocks of {cfg[0]}")
        self.grid, self.threads = tiles // cfg[0], 32 * (cfg[0] * cfg[1] + 1)
        self.k = compile_module(source(), {"ar_w4_gemv_ws": ARGS}, layer.qweight.device.index or 0,
                                defines(cfg, layer.sym, layer.desc.group, layer.desc.in_features))["ar_w4_gemv_ws"]

    def smem(self, rows: int) -> int:
        d = self.layer.desc
        return self.cfg[3] * stage_bytes(self.cfg, d.group) + 16 * self.cfg[3] + min(rows, 8) * (d.in_features + 8) * 2

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        L, d = self.layer, self.layer.desc
        out = torch.empty(x.shape[0], d.out_features, dtype=x.dtype, device=x.device)
        smem = self.smem(x.shape[0])
        self.k.allow_shared(smem)
        self.k(self.grid, self.threads, (L.qweight.data_ptr(), L.gemv_params(x.dtype).data_ptr(), x.data_ptr(),
                                         out.data_ptr(), x.shape[0], d.out_features, d.in_features, x.stride(0),
                                         d.out_features), smem)
        return out


def compile_only() -> None:
    from ar_kernels.backends._nvrtc import compile_cubin
    for shape, variants in (("4096x14336", UP), ("14336x4096", DOWN), ("4096x4096", SQUARE)):
        for v, cfg in variants.items():
            cubin = compile_cubin(source(), "sm_90", defines(cfg, True, 128))
            print(shape, v, "cubin bytes", len(cubin), "stage bytes", stage_bytes(cfg, 128), flush=True)
    from ar_kernels.backends.cuda import gemv_defines
    for v, ahead in PF.items():
        cubin = compile_cubin(prefetch_source(ahead), "sm_90", gemv_defines(True, True, 128, 1, 8, 1, 1, 4, False))
        print(v, "cubin bytes", len(cubin), flush=True)


def main() -> None:
    from kernel_bench import Timer, build_layer, rel_err, summarize_variants, time_rounds

    from ar_kernels import CudaIntLinear, TorchIntLinear
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--json", default=None)
    ap.add_argument("--compile-only", action="store_true")
    ap.add_argument("--only", default=None, help="comma-separated shapes to run")
    ap.add_argument("--profile", default=None, help="run this 4096x14336 variant (or base) 5 times, for ncu")
    a = ap.parse_args()
    if a.compile_only:
        return compile_only()
    if a.profile:
        layer = build_layer(CudaIntLinear, 4096, 14336, 4, 128, torch.bfloat16, kchunk=UP[a.profile][4]
                            if a.profile != "base" and len(UP[a.profile]) > 4 else 1)
        fn = layer if a.profile == "base" else Variant(layer, UP[a.profile])
        x = torch.randn(1, 4096, device="cuda", dtype=torch.bfloat16)
        for _ in range(5):
            fn(x)
        torch.cuda.synchronize()
        return None
    dt = torch.bfloat16
    timer = Timer(a.reps, 10)
    res: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "shapes": []}

    def save() -> None:
        if a.json:
            pathlib.Path(a.json).write_text(json.dumps(res, indent=1))

    for shape, variants in (("4096x14336", UP), ("14336x4096", DOWN), ("4096x4096", SQUARE)):
        if a.only and shape not in a.only.split(","):
            continue
        inp, n = map(int, shape.split("x"))
        ref = build_layer(TorchIntLinear, inp, n, 4, 128, dt)
        w = ref.dequantize(dt).t().contiguous()
        layer = build_layer(CudaIntLinear, inp, n, 4, 128, dt)
        chunked = {1: layer}
        sres: dict = {"shape": shape, "variants": {}, "bf16_us": []}
        res["shapes"].append(sres)
        with torch.no_grad():
            fns = {"base": (layer, torch.randn(1, inp, device="cuda", dtype=dt))}
            sres["variants"]["base"] = {"cfg": None, "rel_err": {r: rel_err(layer(x), ref(x)) for r in (1, 5, 8)
                                                                  for x in [torch.randn(r, inp, device="cuda", dtype=dt)]},
                                        "graph_us": []}
            for v, ahead in PF.items():
                var = SourceVariant(layer, prefetch_source(ahead), 1)
                sres["variants"][v] = {"cfg": ahead, "rel_err": {r: rel_err(var(x), ref(x)) for r in (1,)
                                                                   for x in [torch.randn(r, inp, device="cuda", dtype=dt)]},
                                       "graph_us": [], "regs": var.k.attribute(4)}
                fns[v] = (var, torch.randn(1, inp, device="cuda", dtype=dt))
            for v, cfg in variants.items():
                try:
                    kc = cfg[4] if len(cfg) > 4 else 1
                    if kc not in chunked:
                        chunked[kc] = build_layer(CudaIntLinear, inp, n, 4, 128, dt, kchunk=kc)
                    var = Variant(chunked[kc], cfg)
                    errs = {}
                    for rows in (1, 5, 8):
                        x = torch.randn(rows, inp, device="cuda", dtype=dt)
                        errs[rows] = rel_err(var(x), ref(x)) if (cfg + (1, 1))[5] and len(cfg) < 7 else 0.0
                    torch.cuda.synchronize()
                except Exception as e:  # noqa: BLE001 - a failing variant is reported, the others still run
                    sres["variants"][v] = {"cfg": cfg, "error": repr(e)}
                    print(f"{shape} {v}: {e!r}", flush=True)
                    continue
                sres["variants"][v] = {"cfg": cfg, "rel_err": errs, "graph_us": [], "regs": var.k.attribute(4),
                                       "local_bytes": var.k.attribute(3)}
                fns[v] = (var, torch.randn(1, inp, device="cuda", dtype=dt))
            time_rounds(shape, sres, fns, w, timer, a.rounds, save)
        summarize_variants(shape, sres, "rel_err")
        save()
        del layer, ref, w, chunked
        torch.cuda.empty_cache()
    save()
    return None


if __name__ == "__main__":
    main()

"""Issue #6, pass 11: three GEMV variants against the shipped GEMV and bf16 ``torch.matmul``: next-step loads
ordered after the wait for this step's data (``dep``), x staged in shared memory (``*_xs``), and the
dequantization on the tensor cores (``tc_*``, ``results/kernel_bench_cuda_pass11_tc.cu``, on its own weight layout).

    PYTHONPATH=packages/ar-kernels/src:benchmarks python benchmarks/kernel_bench_cuda_pass11.py --variants tc_nt4_ks8 \
        --only 4096x14336 --json out.json

    PYTHONPATH=packages/ar-kernels/src:benchmarks python benchmarks/kernel_bench_cuda_pass11.py --json out.json

ptxas puts all of a step's weight loads on one scoreboard and waits on it where the step's data is first read. In the
shipped loop it issues the next step's loads ~90 instructions into the step (after that wait, interleaved with the
address arithmetic), so they are in flight for only part of the step; issued earlier in the source, they land before
the wait and are waited for with this step's (pass 9). The ``dep`` variant makes the next step's index depend on a
word of this step's data (``& zero``, zero a run-time 0 the compiler cannot see) and ends the loads with
``__syncwarp()``: the wait comes first, then the loads, then the whole step's math with them in flight (SASS checked:
no other wait on their scoreboard in the step). Each variant runs the shipped layer's own launch (grid, threads,
shared bytes) on its kernel; timing as pass 8 (rounds of CUDA-graph medians, L2 flushed, bf16 in each round),
relative error against the torch backend at 1, 5 and 8 rows.
"""
from __future__ import annotations

import argparse
import json
import pathlib

import torch
from kernel_bench_cuda_pass10 import KERNELS, SourceVariant, prefetch_source, substitute

SHAPES = ("4096x14336", "14336x4096", "4096x4096", "4096x1024", "2048x2048", "2048x8192", "8192x2048")


def dep_source() -> str:
    s = KERNELS.read_text()
    s = substitute(s, "  int c, kb1;\n", "  int c, kb1;\n  u32 zero;  // 0 at run time, unknown to the compiler\n")
    s = substitute(s, "    load_any(nxt, kb + AR_DEPTH);\n    compute<true>(acc, cur, kb);",
             "    load_any(nxt, kb + AR_DEPTH + (int)(cur.w[0][0].x & zero));\n    __syncwarp();\n"
             "    compute<true>(acc, cur, kb);")
    return substitute(s, "  gv.kb1 = min(nst * (warp + 1) / AR_KSPLIT * AR_DEPTH, nkb);\n",
                "  gv.kb1 = min(nst * (warp + 1) / AR_KSPLIT * AR_DEPTH, nkb);\n  gv.zero = (u32)M >> 31;\n")


def shipped_source() -> str:
    return KERNELS.read_text()


# name: (source, layer settings while the launch is planned); "_xs": x staged in shared memory (LDS, not LDG)
TC = pathlib.Path(__file__).with_name("results") / "kernel_bench_cuda_pass11_tc.cu"


def pack_tc(codes: torch.Tensor) -> torch.Tensor:
    """Codes (K, N) -> int32 (K / 64, N / 16, 32, 4) in the tensor-core dequantization's layout (see the .cu)."""
    k, n = codes.shape
    c = codes.to(torch.int32).view(k // 64, 4, 4, 2, 2, n // 16, 2, 4, 2)  # (kb, cx, t16, h, e1, tile, nh, c', n1)
    c = c.permute(0, 5, 1, 4, 7, 2, 8, 3, 6).reshape(k // 64, n // 16, 32, 4, 8)
    words = torch.zeros(c.shape[:-1], dtype=torch.int32, device=codes.device)
    for i in range(8):
        words |= c[..., i] << (4 * i)
    return words


def unpack_tc(words: torch.Tensor, k: int, n: int) -> torch.Tensor:
    nib = torch.stack([(words >> (4 * i)) & 15 for i in range(8)], -1)
    c = nib.view(k // 64, n // 16, 4, 2, 4, 4, 2, 2, 2).permute(0, 2, 5, 7, 3, 1, 8, 4, 6)
    return c.reshape(k, n)


def tc_defines(nt: int, ks: int, sym: bool, group: int) -> dict:
    from ar_kernels.backends.cuda import gemv_defines, min_blocks
    return {**gemv_defines(True, sym, group, 1, ks, 1, 1, nt, False), "AR_MINB": min_blocks(1, ks, group, 1, nt)}


class TcVariant:
    """The tensor-core dequantization GEMV (``nt`` tiles per warp, ``ks`` warps per block) on its own copy of the
    layer's weight (repacked) and scales, 1 to 8 rows of bf16 activations."""

    def __init__(self, layer, nt: int, ks: int) -> None:  # noqa: ANN001
        from ar_kernels.backends._mma_layout import unpack_w4_mma
        from ar_kernels.backends._nvrtc import compile_module
        d = layer.desc
        n16 = layer.scales.shape[1]
        codes = unpack_w4_mma(layer.qweight, d.in_features, n16)
        self.q = pack_tc(codes)
        assert torch.equal(unpack_tc(self.q, d.in_features, n16), codes)
        self.p = layer.scales.view(layer.scales.shape[0], n16 // 16, 2, 8).transpose(2, 3).contiguous().view(torch.int32)
        self.n, self.k, self.grid, self.threads = d.out_features, d.in_features, n16 // 16 // nt, 32 * ks
        src = KERNELS.read_text() + "\n" + TC.read_text()
        self.kern = compile_module(src, {"ar_w4_gemv_tc": "pppp" + "iiiii"}, layer.qweight.device.index or 0,
                                   tc_defines(nt, ks, layer.sym, d.group))["ar_w4_gemv_tc"]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.empty(x.shape[0], self.n, dtype=x.dtype, device=x.device)
        self.kern(self.grid, self.threads, (self.q.data_ptr(), self.p.data_ptr(), x.data_ptr(), out.data_ptr(),
                                            x.shape[0], self.n, self.k, x.stride(0), self.n))
        return out


TC_CONFIGS = {"tc_nt4_ks8": (4, 8), "tc_nt2_ks16": (2, 16), "tc_nt4_ks16": (4, 16), "tc_nt2_ks32": (2, 32),
              "tc_nt1_ks16": (1, 16)}

VARIANTS = {"dep": (dep_source, {}), "base_xs": (shipped_source, {"gemv_xsmem": True}),
            "dep_xs": (dep_source, {"gemv_xsmem": True}),
            **{f"l1pf{a}": (lambda a=a: prefetch_source(a, "L1", True), {}) for a in (2, 3, 4)},
            "l1pf2_na": (lambda: prefetch_source(2, "L1"), {}),
            **{f"l1pf{a}_line": (lambda a=a: prefetch_source(a, "L1", True, True), {}) for a in (2, 3)},
            **{f"l2pf{a}_line": (lambda a=a: prefetch_source(a, "L2", False, True), {}) for a in (2, 4)}}


def main() -> None:
    from kernel_bench import Timer, build_layer, rel_err, summarize_variants, time_rounds

    from ar_kernels import CudaIntLinear, TorchIntLinear
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--json", default=None)
    ap.add_argument("--only", default=None, help="comma-separated shapes")
    ap.add_argument("--variants", default=None, help="comma-separated variants (default: all)")
    ap.add_argument("--rows", type=int, default=1, help="rows of the timed calls")
    a = ap.parse_args()
    dt = torch.bfloat16
    timer = Timer(a.reps, 10)
    res: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "shapes": []}

    def save() -> None:
        if a.json:
            pathlib.Path(a.json).write_text(json.dumps(res, indent=1))

    for shape in SHAPES:
        if a.only and shape not in a.only.split(","):
            continue
        inp, n = map(int, shape.split("x"))
        ref = build_layer(TorchIntLinear, inp, n, 4, 128, dt)
        w = ref.dequantize(dt).t().contiguous()
        layer = build_layer(CudaIntLinear, inp, n, 4, 128, dt)
        sres: dict = {"shape": shape, "variants": {}, "bf16_us": [], "rows": a.rows,
                      "config_nt_ks_depth_xs": list(layer._config(a.rows))}
        res["shapes"].append(sres)
        with torch.no_grad():
            fns = {"base": (layer, torch.randn(a.rows, inp, device="cuda", dtype=dt))}
            sres["variants"]["base"] = {"rel_err": {}, "graph_us": []}
            for rows in (1, 5, 8):
                x = torch.randn(rows, inp, device="cuda", dtype=dt)
                sres["variants"]["base"]["rel_err"][rows] = rel_err(layer(x), ref(x))
            chosen = a.variants.split(",") if a.variants else [*VARIANTS, *TC_CONFIGS]
            for v in (v for v in chosen if v in TC_CONFIGS):
                nt, ks = TC_CONFIGS[v]
                if (layer.scales.shape[1] // 16) % nt:
                    continue
                var = TcVariant(layer, nt, ks)
                sres["variants"][v] = {"rel_err": {}, "graph_us": [], "regs": var.kern.attribute(4),
                                       "local_bytes": var.kern.attribute(3)}
                for rows in (1, 5, 8):
                    x = torch.randn(rows, inp, device="cuda", dtype=dt)
                    sres["variants"][v]["rel_err"][rows] = rel_err(var(x), ref(x))
                fns[v] = (var, torch.randn(a.rows, inp, device="cuda", dtype=dt))
            for v, (make, attrs) in ((v, VARIANTS[v]) for v in chosen if v in VARIANTS):
                sres["variants"][v] = {"rel_err": {}, "graph_us": []}
                src = make()
                for name, value in attrs.items():
                    setattr(layer, name, value)
                for rows in (1, 5, 8):
                    x = torch.randn(rows, inp, device="cuda", dtype=dt)
                    sres["variants"][v]["rel_err"][rows] = rel_err(SourceVariant(layer, src, rows)(x), ref(x))
                var = SourceVariant(layer, src, a.rows)
                for name in attrs:
                    setattr(layer, name, None)
                sres["variants"][v]["regs"] = var.k.attribute(4)
                fns[v] = (var, torch.randn(a.rows, inp, device="cuda", dtype=dt))
            time_rounds(shape, sres, fns, w, timer, a.rounds, save)
        summarize_variants(shape, sres, "rel_err")
        save()
        del layer, ref, w
        torch.cuda.empty_cache()
    save()


if __name__ == "__main__":
    main()

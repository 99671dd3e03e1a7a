"""A Hopper (sm_90a) wgmma GEMM for the cuda backend's mid-size batches, against the shipped GEMM and bf16.

Prototype (issue #6, pass 13). A block of two warpgroups takes 128 output columns x R rows of x (R = the wgmma's
N, ``--rows-per-block``). Each warp dequantizes its 16-column tile's words for a 64-k block into registers, exactly
as the GEMV does, and those registers are the wgmma's A operand (m64: the warpgroup's 4 tiles). x is the B operand
from shared memory (no swizzle, K-major core matrices), copied by cp.async through an ``AR_WSTAGES``-slot ring. For
that, x is first reordered (``permute_x``, one gather) so that the k order matches the weight layout's: wgmma step s
(k16) takes physical k = 16 c + 4 s + 2 h + e at logical 2 c + 8 h + e. Weights and their constants are loaded
``AR_WDEPTH`` blocks ahead into registers.

Measured on an H100 (benchmarks/kernel_bench_notes.md, pass 13): correct (rel. error <= 2.5e-4), not faster than
the shipped mma.sync GEMM, not shipped.

    PYTHONPATH=packages/ar-kernels/src:benchmarks python benchmarks/kernel_bench_cuda_wgmma.py --json out.json
"""
from __future__ import annotations

import argparse
import ctypes
import functools
import json
import pathlib

import torch

KERNELS = pathlib.Path(__file__).resolve().parents[1] / "packages/ar-kernels/src/ar_kernels/backends/_w4_mma.cu"
ARGS = "pppppp" + "iiiiiii"  # qrep params x bias out ws | M N K ldx ldo has_bias ksplit


def wgmma_call(n: int, bf16: bool) -> str:
    """The inline asm of one m64n{n}k16 wgmma, A from registers, B from a shared-memory descriptor."""
    t = "bf16" if bf16 else "f16"
    d = ", ".join(f"%{i}" for i in range(n // 2))
    outs = ", ".join(f'"+f"(acc[{i}])' for i in range(n // 2))
    a0 = n // 2
    return f'''__device__ __forceinline__ void wgmma_step(float* acc, const u32* a, u64 desc) {{
  asm volatile("{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{a0 + 5}, 0;\\n"
               "wgmma.mma_async.sync.aligned.m64n{n}k16.f32.{t}.{t} {{{d}}}, {{%{a0}, %{a0 + 1}, %{a0 + 2}, %{a0 + 3}}}, "
               "%{a0 + 4}, p, 1, 1, 0;\\n}}"
               : {outs}
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1) : "memory");
}}
'''


BODY = r'''
#define AR_WSLOT (AR_WR * 128)      // bytes of a ring slot: 64 k of AR_WR rows, 4 wgmma steps of AR_WR x 32 bytes
#ifndef AR_WDEPTH
#define AR_WDEPTH 4                 // 64-k blocks of weight in flight per lane (even)
#endif
#ifndef AR_WSTAGES
#define AR_WSTAGES 5                // ring slots of x; blocks AR_WSTAGES - 2 ahead are in flight
#endif
#ifndef AR_WBOUND_NOX
#define AR_WBOUND_NOX 0             // timing bound: x is copied for the first blocks only (wrong results)
#endif
#ifndef AR_WBOUND_NOMMA
#define AR_WBOUND_NOMMA 0           // timing bound: no wgmma (wrong results)
#endif
#ifndef AR_WMINB
#define AR_WMINB 1                  // blocks per SM the registers must allow
#endif

__device__ __forceinline__ u64 wg_desc(u32 saddr) {  // no swizzle; LBO 128 B (k 8-15), SBO 256 B (next 8 rows)
  return (u64)((saddr & 0x3FFFF) >> 4) | ((u64)(128 >> 4) << 16) | ((u64)(256 >> 4) << 32);
}
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wg_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;" :: "n"(N) : "memory"); }

// x is pre-permuted (host side) so that each 16 bytes of a row's 64-k block is one row of a wgmma core matrix:
// unit u = 2 s + h holds, at 2 c + e, physical k 16 c + 4 s + 2 h + e. Unit u of row n goes to
// slot + s * AR_WR * 32 + (n / 8) * 256 + h * 128 + (n % 8) * 16. 32 consecutive threads take 32 rows of one unit.
__device__ __forceinline__ void wg_fill(u32 slot, const u16* xp, int kb, int m0, int M, int ldx) {
#pragma unroll
  for (int j = 0; j < AR_WR * 8 / 256; ++j) {
    const int v = threadIdx.x + 256 * j, n = v % AR_WR, u = v / AR_WR;
    cp16(slot + (u >> 1) * (AR_WR * 32) + (n >> 3) * 256 + (u & 1) * 128 + (n & 7) * 16,
         xp + (u64)min(m0 + n, M - 1) * ldx + kb * 64 + u * 8, m0 + n < M);  // rows past M: zeros, no read
  }
}

extern "C" __global__ void __launch_bounds__(256, AR_WMINB)
ar_w4_wgmma(const u32x4* __restrict__ qrep, const u32* __restrict__ params, const u16* __restrict__ x,
            const u16* __restrict__ bias, u16* __restrict__ out, float* __restrict__ ws, int M, int N, int K,
            int ldx, int ldo, int has_bias, int ksplit) {
  extern __shared__ __align__(128) unsigned char wring[];
  const int wi = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int mblocks = (M + AR_WR - 1) / AR_WR, tiles = N >> 4;
  const int m0 = (blockIdx.x % mblocks) * AR_WR, split = blockIdx.x / mblocks % ksplit;
  const int tile = blockIdx.x / mblocks / ksplit * 8 + wi;  // warpgroup wi >> 2, its warp wi & 3: 16 columns each
  const int nkb = K >> 6, kb0 = nkb * split / ksplit, kb1 = nkb * (split + 1) / ksplit, n_kb = kb1 - kb0;
  const u32 ring = smem_u32(wring);
  const u32* par = params + (tile * 8 + g) * AR_PW;
  const int pstride = tiles * 8 * AR_PW;
  const u32x4* wq = qrep + (u64)tile * 32 + lane;
  const u64 wstride = (u64)tiles * 32;

  float acc[AR_WR / 2];
#pragma unroll
  for (int i = 0; i < AR_WR / 2; ++i) acc[i] = 0.f;

  u32x4 wv[AR_WDEPTH];  // weight words and constants of blocks i .. i + AR_WDEPTH - 1
  Par pr[AR_WDEPTH];
#pragma unroll
  for (int d = 0; d < AR_WDEPTH; ++d) {
    const int kb = min(kb0 + d, kb1 - 1);
    wv[d] = ldg_stream(wq + (u64)kb * wstride);
    pr[d] = load_par(par + group_of(kb, c) * pstride);
  }
#pragma unroll
  for (int s = 0; s < AR_WSTAGES - 2; ++s) {
    if (s < n_kb) wg_fill(ring + s * AR_WSLOT, x, kb0 + s, m0, M, ldx);
    asm volatile("cp.async.commit_group;" ::: "memory");
  }

  // Block i reads slot i % S. At block i, slot (i - 2) % S is refilled with block i + S - 2: both warpgroups are done
  // with block i - 2 by then (each waited for it, wait_group 1, before the barrier of block i).
  u32 a[2][4][4];
  int slot_i = 0;
  for (int i0 = 0; i0 < n_kb; i0 += AR_WDEPTH) {
#pragma unroll
    for (int d = 0; d < AR_WDEPTH; ++d) {
      const int i = i0 + d, kb = kb0 + i;
      if (i >= n_kb) break;
      asm volatile("cp.async.wait_group %0;" :: "n"(AR_WSTAGES - 3) : "memory");
      asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
      __syncthreads();
      const int refill = slot_i >= 2 ? slot_i - 2 : slot_i + AR_WSTAGES - 2;
      if (!AR_WBOUND_NOX && i + AR_WSTAGES - 2 < n_kb)
        wg_fill(ring + refill * AR_WSLOT, x, kb + AR_WSTAGES - 2, m0, M, ldx);
      asm volatile("cp.async.commit_group;" ::: "memory");
      const Col lo = col_of<0>(pr[d]), hi = col_of<1>(pr[d]);
      const u32x4 q = wv[d];
      const int ahead = min(kb + AR_WDEPTH, kb1 - 1);
      wv[d] = ldg_stream(wq + (u64)ahead * wstride);
      pr[d] = load_par(par + group_of(ahead, c) * pstride);
      dequant(q.x, lo, hi, a[d & 1][0]);
      dequant(q.y, lo, hi, a[d & 1][1]);
      dequant(q.z, lo, hi, a[d & 1][2]);
      dequant(q.w, lo, hi, a[d & 1][3]);
      wg_fence();
      const u32 slot = ring + slot_i * AR_WSLOT;
#pragma unroll
      for (int s = 0; s < 4; ++s)
        if (!AR_WBOUND_NOMMA) wgmma_step(acc, a[d & 1][s], wg_desc(slot + s * (AR_WR * 32)));
      if (AR_WBOUND_NOMMA) acc[0] += __uint_as_float(a[d & 1][0][0] ^ a[d & 1][1][1] ^ a[d & 1][2][2] ^ a[d & 1][3][3]);
      wg_commit();
      wg_wait<0>();  // with block i still in flight here, ptxas serializes every wgmma (C7513)
      slot_i = slot_i + 1 == AR_WSTAGES ? 0 : slot_i + 1;
    }
  }
  wg_wait<0>();

  // D value i of lane (g, c) in warp w: weight column 16 w + g + 8 ((i >> 1) & 1), x row 8 (i >> 2) + 2 c + (i & 1).
#pragma unroll
  for (int i = 0; i < AR_WR / 2; ++i) {
    const int n = tile * 16 + g + 8 * ((i >> 1) & 1), m = m0 + 8 * (i >> 2) + 2 * c + (i & 1);
    if (m >= M) continue;
    if (ksplit == 1) out[(u64)m * ldo + n] = f2act(acc[i] + (has_bias ? act2f(bias[n]) : 0.f));
    else ws[((u64)split * M + m) * N + n] = acc[i];
  }
}
'''


def permute_x(x: torch.Tensor) -> torch.Tensor:
    """x (M, K) with each 64-k block reordered into wgmma core-matrix rows: position 16 s + 8 h + 2 c + e takes
    k = 16 c + 4 s + 2 h + e."""
    m, k = x.shape
    return x.view(m, k // 64, 64)[:, :, _perm(x.device)].reshape(m, k)


@functools.cache
def _perm(device: torch.device) -> torch.Tensor:
    idx = torch.arange(64).view(4, 2, 4, 2)  # (s, h, c, e) -> their position 16 s + 8 h + 2 c + e
    s, h, c, e = (idx // 16) % 4, (idx // 8) % 2, (idx // 2) % 4, idx % 2
    return (16 * c + 4 * s + 2 * h + e).reshape(64).to(device)


@functools.cache
def module(bf16: bool, sym: bool, group: int, rows: int, depth: int, stages: int, minb: int = 1, bound: str = "") -> dict:
    from ar_kernels.backends._nvrtc import Kernel, _check, _driver, compile_cubin
    from ar_kernels.backends.cuda import _REDUCE_ARGS, gemv_defines
    defines = {**gemv_defines(bf16, sym, group, 1, 8, 1, 1, 4, False), "AR_WR": rows, "AR_WDEPTH": depth,
               "AR_WSTAGES": stages, "AR_WMINB": minb, "AR_WBOUND_NOX": int(bound == "nox"),
               "AR_WBOUND_NOMMA": int(bound == "nomma")}
    src = KERNELS.read_text() + wgmma_call(rows, bf16) + BODY
    cubin = compile_cubin(src, "sm_90a", defines)
    mod = ctypes.c_void_p()
    _check(_driver().cuModuleLoadData(ctypes.byref(mod), cubin), "cuModuleLoadData")
    out = {}
    for name, spec in (("ar_w4_wgmma", ARGS), ("ar_w4_gemm_reduce", _REDUCE_ARGS)):
        func = ctypes.c_void_p()
        _check(_driver().cuModuleGetFunction(ctypes.byref(func), mod, name.encode()), "cuModuleGetFunction")
        out[name] = Kernel(func, spec, 0)
    return out


def wgmma_gemm(layer, x: torch.Tensor, ksplit: int = 1, rows: int = 128, depth: int = 4,  # noqa: ANN001
               stages: int = 5, minb: int = 1, bound: str = "") -> torch.Tensor:
    m, k = x.shape
    n = layer.out_features
    kern = module(x.dtype == torch.bfloat16, layer.sym, layer.desc.group, rows, depth, stages, minb, bound)
    smem = stages * rows * 128
    x = permute_x(x)
    kern["ar_w4_wgmma"].allow_shared(smem)
    out = torch.empty(m, n, device=x.device, dtype=x.dtype)
    ws = torch.empty(ksplit, m, n, device=x.device, dtype=torch.float32) if ksplit > 1 else out
    bias = out if layer.bias is None else layer.bias
    has_bias = int(layer.bias is not None)
    kern["ar_w4_wgmma"](n // 128 * ksplit * -(-m // rows), 256,
                        (layer.qweight.data_ptr(), layer.gemv_params(x.dtype).data_ptr(), x.data_ptr(),
                         bias.data_ptr(), out.data_ptr(), ws.data_ptr(), m, n, k, k, n, has_bias, ksplit), smem)
    if ksplit > 1:
        kern["ar_w4_gemm_reduce"](-(-m * n // 512), 256, (ws.data_ptr(), bias.data_ptr(), out.data_ptr(), m, n, n,
                                                          has_bias, ksplit))
    return out


def time_shape(inp: int, out: int, a: argparse.Namespace, timer) -> list[dict]:  # noqa: ANN001
    from kernel_bench import bf16_weights, build_layer, graphed, rel_err, time_bf16

    from ar_kernels import CudaIntLinear, TorchIntLinear
    dtype = torch.bfloat16
    ref = build_layer(TorchIntLinear, inp, out, 4, 128, dtype)
    ours = build_layer(CudaIntLinear, inp, out, 4, 128, dtype)
    ws = bf16_weights(ref.dequantize(dtype).t().contiguous())
    rows_out = []
    with torch.no_grad():
        for rows in a.rows:
            x = torch.randn(rows, inp, device="cuda", dtype=dtype)
            want = ref(x)
            row: dict = {"shape": [inp, out], "rows": rows, "err": {}}
            time_bf16(row, "bf16_us", timer, ws, x, graph=True)
            row["layer_us"] = timer(graphed(lambda x=x: ours(x)))
            for rb, mb, bound in ((*map(int, b.split(",")[:2]), (b.split(",") + [""])[2]) for b in a.blocks):
                for ks in a.ksplits:
                    key = f"wgmma_r{rb}_b{mb}_k{ks}" + (f"_{bound}" if bound else "")
                    args = (ks, rb, a.depth, a.stages, mb, bound)
                    row["err"][key] = rel_err(wgmma_gemm(ours, x, *args), want)
                    row[key] = timer(graphed(lambda x=x, args=args: wgmma_gemm(ours, x, *args)))
            best = min((v, k) for k, v in row.items() if k.startswith("wgmma_") and not k.endswith(("nox", "nomma")))
            print(inp, out, rows, f"bf16 {row['bf16_us']:.1f} layer {row['layer_us']:.1f} best {best}", flush=True)
            print("   ", {k: round(v, 1) for k, v in row.items() if k.startswith("wgmma_")},
                  {k: f"{v:.1e}" for k, v in row["err"].items()}, flush=True)
            rows_out.append(row)
    return rows_out


def main() -> None:
    from kernel_bench import Timer
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[64, 128, 192, 256])
    p.add_argument("--blocks", nargs="+", default=["128,1"], help="ROWS,MINB[,BOUND]: rows per block (the wgmma N), blocks per SM, "
                   "and optionally a timing bound: nox (x copied once) or nomma (no wgmma)")
    p.add_argument("--ksplits", type=int, nargs="+", default=[1, 2])
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--stages", type=int, default=5)
    p.add_argument("--shapes", default="4096x14336,14336x4096")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    res: dict = {"device": torch.cuda.get_device_name(), "timing": []}
    timer = Timer(30, 5)
    for shape in a.shapes.split(","):
        inp, out = map(int, shape.split("x"))
        res["timing"] += time_shape(inp, out, a, timer)
        torch.cuda.empty_cache()
        if a.json:
            pathlib.Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

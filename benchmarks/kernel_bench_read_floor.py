"""How fast can any kernel read the decode GEMV's weight? Read-only kernels on the same bytes and timer.

    PYTHONPATH=packages/ar-kernels/src:benchmarks python benchmarks/kernel_bench_read_floor.py --json out.json
The W4 4096 x 14336 layer's repacked weight (29.4 MB) and, for scale, the bf16 weight's size (117 MB)
are read by kernels that only XOR what they load (no math, no stores but one guarded word):
``gemv``: the shipped GEMV's grid and addresses (896 blocks of 4 warps, each warp a K slice of one
16-column tile, k-block-major chunks of 2 blocks) with INFL 16-byte loads per lane in flight;
``stream``: a grid of blocks x 8 warps, each warp one contiguous range, INFL loads in flight.
Each is timed as kernel_bench times a layer (CUDA graph, L2 flushed by reading, median), next to a graph of
one tiny kernel (the timer's floor), the shipped GEMV and bf16 ``torch.matmul``. If the best read of the
29.4 MB here is not far below the GEMV, the GEMV is at the memory floor of this timer.
"""
from __future__ import annotations

import argparse
import json
import pathlib

import torch
from kernel_bench import Timer, build_layer, graphed

from ar_kernels import CudaIntLinear
from ar_kernels.backends._nvrtc import compile_module

SRC = r"""
typedef unsigned int u32;
struct alignas(16) u32x4 { u32 x, y, z, w; };
__device__ __forceinline__ u32x4 ldg_stream(const u32x4* p) {
  u32x4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}
// The GEMV's addresses: block kb of tile t at unit (kb / 2) * tiles * 2 + t * 2 + kb % 2 (512 bytes a unit).
extern "C" __global__ void __launch_bounds__(128) rd_gemv(const u32x4* __restrict__ w, u32* out, int tiles, int nkb) {
  const int t = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int kb0 = nkb * warp / 4, kb1 = nkb * (warp + 1) / 4;
  u32 acc = 0;
  for (int kb = kb0; kb < kb1; kb += INFL) {
    u32x4 v[INFL];
#pragma unroll
    for (int i = 0; i < INFL; ++i)
      v[i] = ldg_stream(w + ((u32)((kb + i) >> 1) * tiles * 2 + t * 2 + ((kb + i) & 1)) * 32 + lane);
#pragma unroll
    for (int i = 0; i < INFL; ++i) acc ^= v[i].x ^ v[i].y ^ v[i].z ^ v[i].w;
  }
  if (acc == 0x9E3779B9u) out[0] = acc;
}
// Each warp one contiguous range of 512-byte units.
extern "C" __global__ void __launch_bounds__(256) rd_stream(const u32x4* __restrict__ w, u32* out, int units, int unused) {
  const int gw = blockIdx.x * 8 + (threadIdx.x >> 5), nw = gridDim.x * 8, lane = threadIdx.x & 31;
  const int u0 = (int)((long long)units * gw / nw), u1 = (int)((long long)units * (gw + 1) / nw);
  u32 acc = 0;
  for (int u = u0; u < u1; u += INFL) {
    u32x4 v[INFL];
#pragma unroll
    for (int i = 0; i < INFL; ++i) v[i] = u + i < u1 ? ldg_stream(w + (u + i) * 32 + lane) : u32x4{0, 0, 0, 0};
#pragma unroll
    for (int i = 0; i < INFL; ++i) acc ^= v[i].x ^ v[i].y ^ v[i].z ^ v[i].w;
  }
  if (acc == 0x9E3779B9u) out[0] = acc;
}
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    timer = Timer(50, 10)
    dev = torch.cuda.current_device()
    sms = torch.cuda.get_device_properties(dev).multi_processor_count
    layer = build_layer(CudaIntLinear, 4096, 14336, 4, 128, torch.bfloat16)
    q = layer.qweight
    tiles, nkb = q.shape[1], 4096 // 64
    big = torch.zeros(4096 * 14336 * 2 // 16, 4, dtype=torch.int32, device="cuda")  # bf16 weight's bytes
    out = torch.zeros(4, dtype=torch.int32, device="cuda")
    w_bf16 = torch.randn(4096, 14336, device="cuda", dtype=torch.bfloat16)
    x = torch.randn(1, 4096, device="cuda", dtype=torch.bfloat16)
    tiny = torch.zeros(1, device="cuda")
    res: dict = {"device": torch.cuda.get_device_name(), "weight_bytes": q.numel() * 4, "sms": sms,
                 "floor_us": timer(graphed(lambda: tiny.add_(1))),
                 "bf16_matmul_us": timer(graphed(lambda: torch.matmul(x, w_bf16))),
                 "shipped_gemv_us": timer(graphed(lambda: layer(x))), "reads": []}
    print({k: v for k, v in res.items() if k != "reads"}, flush=True)

    def add(name: str, fn, nbytes: int) -> None:
        us = timer(graphed(fn))
        body = us - res["floor_us"]
        r = {"name": name, "us": us, "bytes": nbytes, "tb_s_of_body": nbytes / body / 1e6 if body > 0 else None}
        res["reads"].append(r)
        print(f"{name:<28} {us:6.2f} us  body {body:6.2f} us  {r['tb_s_of_body'] or 0:.2f} TB/s", flush=True)
        if a.json:
            pathlib.Path(a.json).write_text(json.dumps(res, indent=1))

    units, ub = q.numel() * 4 // 512, big.numel() * 4 // 512
    for infl in (2, 4, 8, 16):
        k = compile_module(SRC, {"rd_gemv": "ppii", "rd_stream": "ppii"}, dev, {"INFL": infl})
        add(f"gemv-shaped infl {infl}", lambda k=k: k["rd_gemv"](tiles, 128, (q.data_ptr(), out.data_ptr(), tiles, nkb)),
            q.numel() * 4)
        for bps in (4, 8):
            add(f"stream {bps}x8 warps/SM infl {infl}",
                lambda k=k, bps=bps: k["rd_stream"](sms * bps, 256, (q.data_ptr(), out.data_ptr(), units, 0)),
                q.numel() * 4)
        if infl in (4, 8):
            add(f"stream 117MB 4x8 infl {infl}",
                lambda k=k: k["rd_stream"](sms * 4, 256, (big.data_ptr(), out.data_ptr(), ub, 0)), big.numel() * 4)
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

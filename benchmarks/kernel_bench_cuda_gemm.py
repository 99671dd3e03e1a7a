"""The cuda backend's GEMM for 33-512 rows (``ar_w4_gemm``) against the torch backend, bf16 ``torch.matmul`` and the
layer's current path (dequantize + cuBLAS). 4096 -> 14336 and 14336 -> 4096, W4 g128, L2 flushed, CUDA graphs.

    PYTHONPATH=packages/ar-kernels/src:benchmarks python benchmarks/kernel_bench_cuda_gemm.py --json out.json

``--blocks TW,MT,MINB ...`` times block shapes: TW 16-column tiles per warp (8 / TW warps), MT n8 tiles of rows
(8 MT rows per block), MINB blocks per SM for the registers (ring slots: ``--stages``).
"""
from __future__ import annotations

import argparse
import functools
import json

import torch
from kernel_bench import Timer, bf16_weights, build_layer, graphed, rel_err, time_bf16

from ar_kernels import CudaIntLinear, LayerDesc, TorchIntLinear
from ar_kernels.backends._nvrtc import compile_module
from ar_kernels.backends.cuda import _GEMM_ARGS, _REDUCE_ARGS, _source, gemv_defines


@functools.cache
def module(bf16: bool, sym: bool, group: int, stages: int, minb: int, tw: int = 2, mt: int = 8) -> dict:
    defines = {**gemv_defines(bf16, sym, group, 1, 8, 1, 1, 4, False), "AR_GSTAGES": stages, "AR_GMINB": minb,
               "AR_GTW": tw, "AR_GMT": mt}
    return compile_module(_source(), {"ar_w4_gemm": _GEMM_ARGS, "ar_w4_gemm_reduce": _REDUCE_ARGS}, 0, defines)


def gemm(layer: CudaIntLinear, x: torch.Tensor, ksplit: int = 1, stages: int = 4, minb: int = 3, tw: int = 2,
         mt: int = 8) -> torch.Tensor:
    """x (M, K) @ W through ``ar_w4_gemm`` (N a multiple of 128), K split in ``ksplit`` (then reduced)."""
    m, k = x.shape
    n = layer.out_features
    kern = module(x.dtype == torch.bfloat16, layer.sym, layer.desc.group, stages, minb, tw, mt)
    rows = 8 * mt
    smem = stages * (rows * 72 * 2 + 8 * 512)
    kern["ar_w4_gemm"].allow_shared(smem)
    out = torch.empty(m, n, device=x.device, dtype=x.dtype)
    ws = torch.empty(ksplit, m, n, device=x.device, dtype=torch.float32) if ksplit > 1 else out
    bias = out if layer.bias is None else layer.bias
    has_bias = int(layer.bias is not None)
    kern["ar_w4_gemm"](n // 128 * ksplit * -(-m // rows), 256 // tw,
                       (layer.qweight.data_ptr(), layer.gemv_params(x.dtype).data_ptr(), x.data_ptr(),
                        bias.data_ptr(), out.data_ptr(), ws.data_ptr(), m, n, k, k, n, has_bias, ksplit), smem)
    if ksplit > 1:
        kern["ar_w4_gemm_reduce"](-(-m * n // 2 // 256), 256, (ws.data_ptr(), bias.data_ptr(), out.data_ptr(), m, n,
                                                              n, has_bias, ksplit))
    return out


def check(inp: int, out: int, dtype: torch.dtype, sym: bool, bias: bool, rows: int, ksplit: int,
          block: tuple = (2, 8, 3)) -> float:
    """Relative error of the GEMM against the torch backend on a random layer."""
    desc = LayerDesc(in_features=inp, out_features=out, bits=4, group_size=128, sym=sym, dtype=dtype)
    g = torch.Generator().manual_seed(rows)
    codes = torch.randint(0, 16, (out, inp), generator=g, dtype=torch.int32).to(torch.uint8)
    zero = torch.full((out, inp // 128), 8) if sym else torch.randint(1, 16, (out, inp // 128), generator=g)
    scales = (torch.rand(out, inp // 128, generator=g) * 0.01 + 0.001).half()
    from ar_kernels.packing import gptq
    sd = {"qweight": gptq.pack_qweight(codes, 4), "qzeros": gptq.pack_qzeros(zero.int(), 4),
          "scales": scales.t().contiguous()}
    if bias:
        sd["bias"] = torch.randn(out, generator=g).to(dtype)
    layers = []
    for cls in (TorchIntLinear, CudaIntLinear):
        layer = cls(desc, bias=bias, device="meta")
        layer.load_state_dict({k: v.clone() for k, v in sd.items()}, assign=True)
        layer = layer.cuda()
        layer.post_init()
        layers.append(layer)
    x = torch.randn(rows, inp, device="cuda", dtype=dtype)
    with torch.no_grad():
        tw, mt, minb = block
        return rel_err(gemm(layers[1], x, ksplit, 3, minb, tw, mt), layers[0](x))


def time_shape(inp: int, out: int, a: argparse.Namespace, blocks: list | None, timer: Timer) -> list[dict]:
    """Per row count: bf16, the layer as shipped and every GEMM variant of the sweep, us in a CUDA graph."""
    dtype = torch.bfloat16
    ref = build_layer(TorchIntLinear, inp, out, 4, 128, dtype)
    ours = build_layer(CudaIntLinear, inp, out, 4, 128, dtype)
    ws = bf16_weights(ref.dequantize(dtype).t().contiguous())
    variants = ({f"gemm_t{tw}_m{mt}_b{mb}_k{ks}": (ks, a.stages, mb, tw, mt) for tw, mt, mb in blocks for ks in a.ksplits}
                if blocks else
                {f"gemm_s{st}_b{mb}_k{ks}": (ks, st, mb) for st, mb in ((3, 3), (4, 3), (3, 4), (4, 4)) for ks in a.ksplits})
    rows_out = []
    with torch.no_grad():
        for rows in a.rows:
            x = torch.randn(rows, inp, device="cuda", dtype=dtype)
            row = {"shape": [inp, out], "rows": rows, "err": rel_err(gemm(ours, x, 2), ref(x))}
            time_bf16(row, "bf16_us", timer, ws, x, graph=True)
            row["layer_us"] = timer(graphed(lambda x=x: ours(x)))
            for name, args in variants.items():
                row[name] = timer(graphed(lambda x=x, args=args: gemm(ours, x, *args)))
            best = min((v, k) for k, v in row.items() if k.startswith("gemm_"))
            print(inp, out, rows, f"bf16 {row['bf16_us']:.1f} layer {row['layer_us']:.1f} best {best}", flush=True)
            rows_out.append(row)
    return rows_out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[16, 32, 33, 64, 128, 256, 512])
    p.add_argument("--json", default=None)
    p.add_argument("--errors", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--blocks", nargs="+", default=None, help="TW,MT,MINB block shapes (default: the ring sweep)")
    p.add_argument("--stages", type=int, default=3)
    p.add_argument("--ksplits", type=int, nargs="+", default=[1, 2, 4, 8])
    a = p.parse_args()
    blocks = [tuple(map(int, b.split(","))) for b in a.blocks] if a.blocks else None
    res: dict = {"device": torch.cuda.get_device_name(), "errors": {}, "timing": []}
    for dtype in (torch.bfloat16, torch.float16) if a.errors else ():
        for sym in (True, False):
            for rows in (1, 33, 100, 200):
                for block in blocks or [(2, 8, 3)]:
                    key = f"{dtype} sym={sym} bias={not sym} rows={rows} block={block}"
                    res["errors"][key] = max(check(1024, 256, dtype, sym, not sym, rows, ks, block) for ks in (1, 3))
                    print(key, f"{res['errors'][key]:.1e}", flush=True)
    timer = Timer(30, 5)
    for inp, out in ((4096, 14336), (14336, 4096)):
        res["timing"] += time_shape(inp, out, a, blocks, timer)
        torch.cuda.empty_cache()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()

"""Decode-step time of a stack of Llama-3-8B-shaped linear layers, W4 ``cuda`` layers vs bf16 ``nn.Linear``.

    PYTHONPATH=packages/ar-kernels/src:benchmarks python benchmarks/decode_stack_bench.py --layers 8 --json out.json

Each layer is the seven projections of a Llama-3-8B decoder layer at one token (q, k, v, o: 4096 -> 4096 / 1024 /
1024 / 4096; gate, up: 4096 -> 14336; down: 14336 -> 4096) joined by the residual adds and the SiLU-gated product
(attention itself is left out: it is the same for both). Reported per token: eager (as ``model.generate`` runs by
default, so the CPU's launch cost counts: wall time of 50 steps back to back, then a sync), one CUDA graph of the
whole stack (as servers run decode) and, with ``--compile-backend`` (e.g. ``cudagraphs``) or ``--compile-mode``
(e.g. ``reduce-overhead``), the step under ``torch.compile(fullgraph=True)``, timed as eager is. Random 4-bit codes,
group 128, bf16 activations.
"""
from __future__ import annotations

import argparse
import copy
import json
import pathlib
import statistics
import time

import torch
from kernel_bench import Timer, build_layer, graphed
from torch import nn
from torch.nn import functional as F

from ar_kernels import CudaIntLinear

SHAPES = {"q": (4096, 4096), "k": (4096, 1024), "v": (4096, 1024), "o": (4096, 4096),
          "gate": (4096, 14336), "up": (4096, 14336), "down": (14336, 4096)}


def stack(n: int, quantized: bool) -> list[dict[str, nn.Module]]:
    """``n`` layers of distinct weights (copies of one random layer per shape: packing is slow on the CPU)."""
    def make(i: int, o: int) -> nn.Module:
        if quantized:
            return build_layer(CudaIntLinear, i, o, 4, 128, torch.bfloat16)
        return nn.Linear(i, o, bias=False, device="cuda", dtype=torch.bfloat16)
    proto = {k: make(*s) for k, s in SHAPES.items()}
    return [{k: copy.deepcopy(m) for k, m in proto.items()} for _ in range(n)]


def step(layers: list[dict[str, nn.Module]], x: torch.Tensor) -> torch.Tensor:
    for m in layers:
        q, _, _ = m["q"](x), m["k"](x), m["v"](x)  # k and v would feed attention, which is left out
        h = x + m["o"](q)
        x = h + m["down"](F.silu(m["gate"](h)) * m["up"](h))
    return x


def eager_us(fn, steps: int = 50) -> float:
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--compile-backend", default=None)
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. reduce-overhead (backend inductor "
                    "unless --compile-backend says)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    x = torch.randn(1, 1, 4096, device="cuda", dtype=torch.bfloat16) * 0.1
    res: dict = {"device": torch.cuda.get_device_name(), "layers": a.layers, "per_token_us": {}}
    with torch.no_grad():
        for name, quantized in (("bf16 nn.Linear", False), ("W4 cuda", True)):
            layers = stack(a.layers, quantized)
            fn = lambda layers=layers: step(layers, x)  # noqa: E731
            eager_us(fn, 5)
            # the stack's weights (0.9-3.5 GB) dwarf the L2: no flush needed between graph replays
            r = {"eager": statistics.median(eager_us(fn) for _ in range(a.rounds)),
                 "graph": Timer(50, 3, hot=True)(graphed(fn))}
            if a.compile_backend or a.compile_mode:
                compiled = torch.compile(fn, fullgraph=True, backend=a.compile_backend or "inductor", mode=a.compile_mode)
                eager_us(compiled, 5)  # compiles, warms up (and records the CUDA graphs)
                eager_us(compiled, 20)  # more warm-up: timing starts from the steady state
                r["compiled"] = statistics.median(eager_us(compiled) for _ in range(a.rounds))
            res["per_token_us"][name] = r
            how = "/".join(filter(None, (a.compile_backend, a.compile_mode)))
            comp = f"  compiled ({how}) {r['compiled']:8.1f} us" if "compiled" in r else ""
            print(f"{name:<16} {a.layers} layers, per token: eager {r['eager']:8.1f} us  graph {r['graph']:8.1f} us{comp}",
                  flush=True)
            del layers
            torch.cuda.empty_cache()
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

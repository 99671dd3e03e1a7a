"""Issue #6, pass 9: K loops fully unrolled (loads 1-4 steps ahead) and warps on interleaved k-blocks, against the
shipped GEMV.

    PYTHONPATH=packages/ar-kernels/src:benchmarks python benchmarks/kernel_bench_cuda_pass9.py --json out.json

Variants are macros of the pass-8 experiment kernel (``results/kernel_bench_cuda_pass8.cu``), run by the pass-8
script's machinery (same timer, rounds, error checks): ``AR_FIX`` n: every warp has exactly n one-block steps, the
loop fully unrolled, each step's loads issued ``AR_AHEAD`` steps before its math (so ptxas may schedule the loads of
several steps at once, not one step ahead as the register double buffer of the shipped loop); ``AR_ILV``: warp w of
a block takes k-blocks w, w + ksplit, ... instead of a contiguous K slice (the block's warps read adjacent k-blocks);
``AR_DYN``: the same two first k-blocks, then each warp takes the block's next k-block from a shared-memory counter
(a warp that gets its data sooner does more of the block's K); ``pair<a>_<b>``: one block per SM holding a 4-tile
group of a warps and a 3-tile group of b warps (``AR_PAIR`` with ``AR_KS1`` b), so that the warps' shares of the
SM's bytes can be evened out (pass 8's pair had 8 + 8).
"""
from __future__ import annotations

import kernel_bench_cuda_pass8 as pass8


def fix(steps: int, ahead: int) -> dict:
    return {"AR_FIX": steps, "AR_AHEAD": ahead}


ILV = {"AR_ILV": 1}
DYN = {"AR_DYN": 1}
# (ksplit, nt, nfull, xsmem, minb, nacc[, pair, defines]) as in pass 8
UP = {  # 896 tiles, 64 k-blocks: 8 steps per warp at ksplit 8
    "base": None,
    "nt4": (8, 4, None, 0, 2, 2),
    **{f"f8a{a}": (8, 4, None, 0, 2, 2, 0, fix(8, a)) for a in (1, 2, 3, 4)},
    "f8a2n1": (8, 4, None, 0, 2, 1, 0, fix(8, 2)),
    "f8a3n1": (8, 4, None, 0, 2, 1, 0, fix(8, 3)),
    "f8a2xs": (8, 4, None, 1, 2, 2, 0, fix(8, 2)),
    "nt4_ilv": (8, 4, None, 0, 2, 2, 0, ILV),
    "nt4_ks4_ilv": (4, 4, None, 0, 4, 2, 0, ILV),
    "nt2_ks8_ilv": (8, 2, None, 0, 4, 1, 0, ILV),
    "nt4_dyn": (8, 4, None, 0, 2, 2, 0, DYN),
    "nt2_ks8_dyn": (8, 2, None, 0, 4, 1, 0, DYN),
    # one block per SM: a 4-tile group of ks warps and a 3-tile group of AR_KS1 (7 tiles per SM on 128 SMs)
    "pair8_8": (8, 4, 128, 0, 1, 2, 1),
    "pair9_7": (9, 4, 128, 0, 1, 2, 1, {"AR_KS1": 7}),
    "pair10_6": (10, 4, 128, 0, 1, 2, 1, {"AR_KS1": 6}),
}
DOWN = {  # 256 tiles, 224 k-blocks: 14 steps per warp at ksplit 16
    "base": None,
    "ks16xs": (16, 2, None, 1, 2, 1),
    **{f"ks16xs_f14a{a}": (16, 2, None, 1, 2, 1, 0, fix(14, a)) for a in (2, 3, 4)},
    "ks32xs": (32, 2, None, 1, 1, 1),
    "ks32xs_ilv": (32, 2, None, 1, 1, 1, 0, ILV),
    "ks16xs_ilv": (16, 2, None, 1, 2, 1, 0, ILV),
    "ks32xs_dyn": (32, 2, None, 1, 1, 1, 0, DYN),
}
SQUARE = {  # 256 tiles, 64 k-blocks: 4 steps per warp at ksplit 16
    "base": None,
    "ks16_f4a2": (16, 2, None, 0, 2, 1, 0, fix(4, 2)),
    "ks16_f4a3": (16, 2, None, 0, 2, 1, 0, fix(4, 3)),
    "ks8nt4_f8a2": (8, 4, None, 0, 2, 2, 0, fix(8, 2)),
    "ks16_ilv": (16, 2, None, 0, 2, 1, 0, ILV),
    "ks16_dyn": (16, 2, None, 0, 2, 1, 0, DYN),
}

if __name__ == "__main__":
    import os
    only = os.environ.get("PASS9_ONLY")  # comma-separated name parts: run only the variants (and base) matching one
    if only:
        keep = lambda d: {k: v for k, v in d.items() if k == "base" or any(p in k for p in only.split(","))}  # noqa: E731
        UP, DOWN, SQUARE = keep(UP), keep(DOWN), keep(SQUARE)
    pass8.UP, pass8.DOWN, pass8.SQUARE = UP, DOWN, SQUARE
    pass8.main()

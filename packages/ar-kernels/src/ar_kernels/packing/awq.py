"""AutoAWQ "gemm" packing: 4-bit values packed along the output dimension, eight per int32.

Within each run of 8 output columns, column ``j`` goes to nibble ``ORDER[j]`` of the word,
with ``ORDER = [0, 4, 1, 5, 2, 6, 3, 7]`` (AWQ interleaves so its kernel can dequantize pairs
with one shift). The same layout holds ``qweight`` (in, out / 8) and ``qzeros`` (ngroups, out / 8);
AWQ zero points are raw (no GPTQ off-by-one).

>>> import torch
>>> hex(int(pack(torch.arange(8, dtype=torch.uint8).reshape(1, 8))[0, 0]))
'0x75316420'
"""
from __future__ import annotations

import torch
from torch import Tensor

ORDER = (0, 4, 1, 5, 2, 6, 3, 7)  # column j of 8 -> nibble ORDER[j]


def _check(bits: int) -> None:
    if bits != 4:
        raise ValueError(f"AWQ packing is defined for bits=4 only, got bits={bits}; use GPTQ packing for other widths")


def pack(values: Tensor, bits: int = 4) -> Tensor:
    """Values (rows, out) in [0, 15] -> int32 (rows, out / 8).

    Pass codes transposed to (in, out) for ``qweight`` and zero points as (ngroups, out) for ``qzeros``.
    """
    _check(bits)
    rows, out = values.shape
    if out % 8:
        raise ValueError(f"AWQ packs 8 columns per int32; out_features={out} is not a multiple of 8")
    if values.numel() and (int(values.min()) < 0 or int(values.max()) > 15):
        raise ValueError(f"AWQ values must lie in [0, 15]; got [{int(values.min())}, {int(values.max())}]")
    v = values.to(torch.int64).reshape(rows, out // 8, 8)
    shifts = torch.tensor(ORDER, dtype=torch.int64) * 4  # (8,) bit offset of each column
    words = (v << shifts).sum(-1)  # disjoint nibbles: sum == bitwise or
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def unpack(packed: Tensor, bits: int = 4) -> Tensor:
    """Inverse of :func:`pack`: int32 (rows, out / 8) -> uint8 (rows, out)."""
    _check(bits)
    rows, words = packed.shape
    shifts = torch.tensor(ORDER, dtype=torch.int64) * 4
    w = (packed.to(torch.int64) & 0xFFFFFFFF).unsqueeze(-1)  # (rows, words, 1)
    return ((w >> shifts) & 0xF).reshape(rows, words * 8).to(torch.uint8)

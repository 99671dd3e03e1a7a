"""The ``cuda`` backend's weight layout: 4-bit codes ordered as mma.m16n8k16 A fragments (pure torch).

``pack_w4_mma`` turns codes (K, N) into int32 words (ceil(N / 16), K / 64, 32, 4), one 16-byte
load per lane per 64 input channels (see ``_w4_mma.cu`` for how the kernel reads them):

  word [tile, kb, lane, kk], lane = 4 * g + c, nibble p (bits 4p .. 4p+3) holds the code of
  column n = 16 * tile + g + 8 * (p & 1) and input channel k = 64 * kb + 16 * c + 4 * kk + j,
  j = 2 * ((p >> 1) & 1) + (p >> 2).

Columns are padded to a multiple of 16 with code 0 (their outputs are never written).

>>> import torch
>>> codes = torch.randint(0, 16, (128, 40), dtype=torch.int32)
>>> torch.equal(unpack_w4_mma(pack_w4_mma(codes), 128, 40), codes)
True
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def padded(n: int) -> int:
    """Columns rounded up to whole 16-column tiles."""
    return -(-n // 16) * 16


def pack_w4_mma(codes: Tensor) -> Tensor:
    """Codes (K, N) in [0, 15], K a multiple of 64 -> int32 (ceil(N / 16), K / 64, 32, 4), on codes' device."""
    k, n = codes.shape
    if k % 64:
        raise ValueError(f"in_features={k} must be a multiple of 64 for the cuda backend's layout")
    c = F.pad(codes.to(torch.int32), (0, padded(n) - n))
    # k = 64 kb + 16 c + 4 kk + 2 j2 + j1;  n = 16 tile + 8 h + g
    c = c.view(k // 64, 4, 4, 2, 2, padded(n) // 16, 2, 8)  # (kb, c, kk, j2, j1, tile, h, g)
    c = c.permute(5, 0, 7, 1, 2, 4, 3, 6)  # (tile, kb, g, c, kk, j1, j2, h): nibble p = 4 j1 + 2 j2 + h
    c = c.reshape(padded(n) // 16, k // 64, 32, 4, 8)
    words = torch.zeros(c.shape[:-1], dtype=torch.int32, device=codes.device)
    for p in range(8):
        words |= c[..., p] << (4 * p)  # p = 7 sets the sign bit: int32 wraps, the bits are what matter
    return words


def unpack_w4_mma(words: Tensor, k: int, n: int) -> Tensor:
    """Inverse of :func:`pack_w4_mma`: int32 words -> codes int32 (K, N)."""
    shifts = torch.arange(0, 32, 4, device=words.device, dtype=torch.int32)
    c = (words.unsqueeze(-1) >> shifts) & 0xF  # (tile, kb, 32, 4, 8)
    c = c.view(-1, k // 64, 8, 4, 4, 2, 2, 2)  # (tile, kb, g, c, kk, j1, j2, h)
    c = c.permute(1, 3, 4, 6, 5, 0, 7, 2)  # (kb, c, kk, j2, j1, tile, h, g)
    return c.reshape(k, -1)[:, :n].contiguous()


def pad_columns(t: Tensor, value: float = 0.0) -> Tensor:
    """(rows, N) -> (rows, padded(N)) contiguous, new columns set to ``value``."""
    n = t.shape[-1]
    return F.pad(t, (0, padded(n) - n), value=value).contiguous()


def split_scale_bf16(scales: Tensor) -> tuple[Tensor, Tensor]:
    """fp16 scales -> (hi, lo) bf16 with hi + lo == scale exactly, as the bf16 kernel splits them.

    A fp16 significand has 11 bits, bf16 8: ``lo`` holds the last 3, so ``(q - z) * lo`` (at most
    4 + 3 bits) is exact in bf16 and ``fma(q - z, hi, (q - z) * lo)`` rounds ``(q - z) * scale`` once.
    """
    s = scales.float()
    hi = s.to(torch.bfloat16)
    return hi, (s - hi.float()).to(torch.bfloat16)

"""The ``cuda`` backend's layouts: 4-bit codes ordered as mma.m16n8k16 A fragments, and the GEMV's
per-group constants (pure torch).

``pack_w4_mma`` turns codes (K, N) into int32 words (K / 64 / P, ceil(N / 16), P, 32, 4), one 16-byte
load per lane per 64 input channels (see ``_w4_mma.cu`` for how the kernel reads them):

  word [kb // P, tile, kb % P, lane, kk], lane = 4 * g + c, nibble p (bits 4p .. 4p+3) holds the code
  of column n = 16 * tile + g + 8 * (p & 1) and input channel k = 64 * kb + 16 * c + 4 * kk + j,
  j = 2 * ((p >> 1) & 1) + (p >> 2).

P (``kchunk``, a power of 2) 64-k blocks of a tile are stored together (the GEMV loads a chunk from
one address), and the chunks of one P-block k step for every tile are contiguous, so the warps working
on one k step read one span of memory. Columns are padded to a multiple of 16 with code 0 (their
outputs are never written). ``gemv_params`` gives each lane its group's scale constants in one load.

>>> import torch
>>> codes = torch.randint(0, 16, (128, 40), dtype=torch.int32)
>>> torch.equal(unpack_w4_mma(pack_w4_mma(codes), 128, 40), codes)
True
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F


def padded(n: int) -> int:
    """Columns rounded up to whole 16-column tiles."""
    return -(-n // 16) * 16


def kchunk_for(k: int, kchunk: int) -> int:
    """P for ``k`` input channels: ``kchunk`` (a power of 2) reduced to divide K / 64."""
    if kchunk < 1 or kchunk & (kchunk - 1):
        raise ValueError(f"kchunk={kchunk} must be a power of 2")
    return math.gcd(kchunk, k // 64)


def pack_w4_mma(codes: Tensor, kchunk: int = 2) -> Tensor:
    """Codes (K, N) in [0, 15], K a multiple of 64 -> int32 (K / 64 / P, ceil(N / 16), P, 32, 4), P from
    :func:`kchunk_for`, on codes' device."""
    k, n = codes.shape
    if k % 64:
        raise ValueError(f"in_features={k} must be a multiple of 64 for the cuda backend's layout")
    p = kchunk_for(k, kchunk)
    c = F.pad(codes.to(torch.int32), (0, padded(n) - n))
    # k = 64 (P ko + ki) + 16 c + 4 kk + 2 j2 + j1;  n = 16 tile + 8 h + g
    c = c.view(k // 64 // p, p, 4, 4, 2, 2, padded(n) // 16, 2, 8)  # (ko, ki, c, kk, j2, j1, tile, h, g)
    c = c.permute(0, 6, 1, 8, 2, 3, 5, 4, 7)  # (ko, tile, ki, g, c, kk, j1, j2, h): nibble p = 4 j1 + 2 j2 + h
    c = c.reshape(k // 64 // p, padded(n) // 16, p, 32, 4, 8)
    words = torch.zeros(c.shape[:-1], dtype=torch.int32, device=codes.device)
    for i in range(8):
        words |= c[..., i] << (4 * i)  # i = 7 sets the sign bit: int32 wraps, the bits are what matter
    return words


def unpack_w4_mma(words: Tensor, k: int, n: int) -> Tensor:
    """Inverse of :func:`pack_w4_mma` (any P): int32 words -> codes int32 (K, N)."""
    shifts = torch.arange(0, 32, 4, device=words.device, dtype=torch.int32)
    ko, tiles, p = words.shape[:3]
    c = (words.unsqueeze(-1) >> shifts) & 0xF  # (ko, tile, ki, 32, 4, 8)
    c = c.view(ko, tiles, p, 8, 4, 4, 2, 2, 2)  # (ko, tile, ki, g, c, kk, j1, j2, h)
    c = c.permute(0, 2, 4, 5, 7, 6, 1, 8, 3)  # (ko, ki, c, kk, j2, j1, tile, h, g)
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


def _pairs(t: Tensor) -> Tensor:
    """(ngroups, Np) 16-bit values -> int32 (ngroups, Np / 16, 8, 1): column 16 t + g in the low half,
    column 16 t + g + 8 in the high half of word (t, g)."""
    ng, np_ = t.shape
    h = t.contiguous().view(torch.int16).view(ng, np_ // 16, 2, 8)
    return torch.stack((h[:, :, 0], h[:, :, 1]), dim=-1).contiguous().view(torch.int32)


def gemv_params(scales: Tensor, zeros: Tensor, bf16: bool, sym: bool) -> Tensor:
    """The GEMV's per-group constants: fp16 scales and zero points (ngroups, Np), Np a multiple of 16 ->
    int32 (ngroups, Np / 16, 8, W), word lists per (group, tile, g) as pairs of columns (g, g + 8):

      bf16: [s_hi, s_lo] (sym) or [s_hi, s_lo, -(128 + z), 0] with s_hi + s_lo == s (``split_scale_bf16``)
      fp16: [s] (sym) or [s, -(1024 + z)]

    The kernel subtracts 128 + z (1024 + z) from 128 + q (1024 + q): the values are exact.
    """
    if bf16:
        hi, lo = split_scale_bf16(scales)
        words = [_pairs(hi), _pairs(lo)]
        if not sym:
            zz = _pairs((-(128.0 + zeros.float())).to(torch.bfloat16))
            words += [zz, torch.zeros_like(zz)]
    else:
        words = [_pairs(scales.to(torch.float16))]
        if not sym:
            words.append(_pairs((-(1024.0 + zeros.float())).to(torch.float16)))
    return torch.cat(words, dim=-1).contiguous()

"""Dense little-endian bit streams in int32 words: the one layout GPTQ and compressed-tensors share.

Every 32 consecutive values of ``bits`` bits fill exactly ``bits`` int32 words: value ``i`` of a
block starts at bit ``i * bits`` of the block and may spill into the next word (3, 5, 6, 7
bits). For 2, 4 and 8 bits this is the familiar "value i at shift i*bits" packing; for 3 bits it
is GPTQ's word-spanning layout (values 10 and 21 straddle words).
"""
from __future__ import annotations

import sys

import torch
from torch import Tensor

_MASK32 = 0xFFFFFFFF


def _check(values: Tensor, bits: int) -> None:
    if not 1 <= bits <= 8:
        raise ValueError(f"bits={bits} cannot be packed; valid bits are 1..8")
    if values.dim() != 2:
        raise ValueError(f"expected a 2-D tensor of codes, got shape {tuple(values.shape)}")
    if values.numel() and (int(values.min()) < 0 or int(values.max()) >= 2**bits):
        raise ValueError(f"codes must lie in [0, {2**bits - 1}] for {bits}-bit packing; "
                         f"got [{int(values.min())}, {int(values.max())}]")


def _positions(bits: int) -> tuple[Tensor, Tensor]:
    start = torch.arange(32, dtype=torch.int64) * bits  # bit offset of each value in its block
    return start // 32, start % 32


def _to_int32(words: Tensor) -> Tensor:
    """int64 words holding 32-bit patterns -> int32 with the same bits."""
    words = words & _MASK32
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def pack_rows(values: Tensor, bits: int) -> Tensor:
    """Pack each row of ``values`` (rows, n) into int32 words (rows, ceil(n * bits / 32)).

    Rows are padded with zeros to whole blocks of 32 values, then truncated to the words the
    real values need, so ``n`` that is a multiple of 32 gives exactly ``n * bits / 32`` words.
    """
    _check(values, bits)
    rows, n = values.shape
    if _whole_words(bits, n):
        return _pack_whole_words(values, bits)
    nblocks = -(-n // 32)
    v = torch.zeros(rows, nblocks * 32, dtype=torch.int64)
    v[:, :n] = values.to(torch.int64)
    v = v.reshape(rows, nblocks, 32)  # (rows, blocks, 32)
    word, off = _positions(bits)
    out = torch.zeros(rows, nblocks, bits + 1, dtype=torch.int64)  # one spare word for spills
    out.index_add_(2, word, (v << off) & _MASK32)
    out.index_add_(2, word + 1, v >> (32 - off))  # high bits that spill into the next word
    out = out[..., :bits].reshape(rows, nblocks * bits)
    return _to_int32(out[:, : -(-n * bits // 32)]).contiguous()


def unpack_rows(packed: Tensor, bits: int, n: int) -> Tensor:
    """Inverse of :func:`pack_rows`: int32 (rows, words) -> uint8 codes (rows, n)."""
    if not 1 <= bits <= 8:
        raise ValueError(f"bits={bits} cannot be unpacked; valid bits are 1..8")
    rows, nwords = packed.shape
    if nwords != -(-n * bits // 32):
        raise ValueError(f"{nwords} words per row cannot hold {n} values of {bits} bits; "
                         f"expected {-(-n * bits // 32)}")
    if _whole_words(bits, n):
        return _unpack_whole_words(packed, bits)
    nblocks = -(-n // 32)
    w = torch.zeros(rows, nblocks * bits + 1, dtype=torch.int64)
    w[:, :nwords] = packed.to(torch.int64) & _MASK32
    word, off = _positions(bits)
    base = (torch.arange(nblocks) * bits).unsqueeze(1) + word  # (blocks, 32) word index of each value
    lo = w[:, base] >> off
    hi = w[:, base + 1] << (32 - off)
    codes = (lo | hi) & (2**bits - 1)  # (rows, blocks, 32)
    return codes.reshape(rows, nblocks * 32)[:, :n].to(torch.uint8)


def _whole_words(bits: int, n: int) -> bool:
    # 1/2/4/8 bits fill whole bytes, and whole rows of int32 words read as little-endian bytes
    return 8 % bits == 0 and n % (32 // bits) == 0 and sys.byteorder == "little"


def _pack_whole_words(values: Tensor, bits: int) -> Tensor:
    """No value spans two words: pack into bytes (value i of a byte at bit i * bits), then read
    each row's bytes as int32 words, which puts value i of a word at bit i * bits."""
    per = 8 // bits
    v = values.to(torch.uint8).contiguous().reshape(values.shape[0], -1, per)
    out = v[..., 0].clone(memory_format=torch.contiguous_format)
    for i in range(1, per):
        out |= v[..., i] << (i * bits)
    return out.view(torch.int32)


def _unpack_whole_words(packed: Tensor, bits: int) -> Tensor:
    shifts = torch.arange(0, 8, bits, dtype=torch.uint8, device=packed.device)
    codes = (packed.contiguous().view(torch.uint8).unsqueeze(-1) >> shifts) & (2**bits - 1)
    return codes.reshape(packed.shape[0], -1)

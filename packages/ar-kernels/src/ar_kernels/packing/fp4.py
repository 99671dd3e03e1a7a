"""FP4 (E2M1) nibble packing shared by MXFP4 and NVFP4 checkpoints: two codes per byte, low nibble first.

A code is ``sign << 3 | magnitude index`` (index 0..7 over 0, 0.5, 1, 1.5, 2, 3, 4, 6), so
``weight_packed[r, k] = codes[r, 2k] | codes[r, 2k + 1] << 4``.

>>> import torch
>>> pack_fp4(torch.tensor([[1, 15]], dtype=torch.uint8)).tolist()
[[241]]
"""
from __future__ import annotations

import torch
from torch import Tensor

E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def pack_fp4(codes: Tensor) -> Tensor:
    """E2M1 codes uint8 (out, in) in [0, 15] -> uint8 (out, in / 2)."""
    if codes.dim() != 2 or codes.shape[1] % 2:
        raise ValueError(f"FP4 packing needs (out, in) codes with an even in; got shape {tuple(codes.shape)}")
    if codes.numel() and int(codes.max()) > 15:
        raise ValueError(f"FP4 codes must lie in [0, 15]; got a maximum of {int(codes.max())}")
    c = codes.to(torch.uint8)
    return (c[:, 0::2] | (c[:, 1::2] << 4)).contiguous()


def unpack_fp4(packed: Tensor) -> Tensor:
    """uint8 (out, in / 2) -> E2M1 codes uint8 (out, in)."""
    lo, hi = packed & 0xF, packed >> 4
    return torch.stack([lo, hi], dim=-1).reshape(packed.shape[0], -1).contiguous()


def fp4_to_float(codes: Tensor) -> Tensor:
    """E2M1 codes -> their float32 values (sign from bit 3)."""
    mag = torch.tensor(E2M1_VALUES, dtype=torch.float32)[(codes & 7).long()]
    return torch.where((codes & 8) > 0, -mag, mag)

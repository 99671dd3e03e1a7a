"""GPTQ (v1) packing, used by ``auto_gptq`` and auto-round's ``auto_round:auto_gptq`` / ``auto_round``.

- ``qweight`` int32 (ceil(in * bits / 32), out): the codes of each output column packed along
  ``in`` as a little-endian bit stream (see :mod:`.bitstream`; 3 bits span words as GPTQ does).
- ``qzeros`` int32 (ngroups, ceil(out * bits / 32)): zero points packed along ``out``; GPTQ v1
  stores ``zero - 1`` (a historical off-by-one its kernels add back), raw zeros use ``offset=0``.

>>> import torch
>>> q = pack_qweight(torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]], dtype=torch.uint8).repeat(1, 4), 4)
>>> q.shape, hex(int(q[0, 0]) & 0xFFFFFFFF)
(torch.Size([4, 1]), '0x87654321')
"""
from __future__ import annotations

import torch
from torch import Tensor

from .bitstream import pack_rows, unpack_rows

SUPPORTED_BITS = (2, 3, 4, 5, 6, 7, 8)


def _check_bits(bits: int) -> None:
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"GPTQ packing of bits={bits} is not defined; valid bits: {SUPPORTED_BITS}")


def pack_qweight(codes: Tensor, bits: int) -> Tensor:
    """Codes (out, in) in [0, 2^bits - 1] -> qweight int32 (ceil(in * bits / 32), out)."""
    _check_bits(bits)
    return pack_rows(codes, bits).t().contiguous()  # (out, words) -> (words, out)


def unpack_qweight(qweight: Tensor, bits: int, in_features: int) -> Tensor:
    """qweight int32 (words, out) -> codes uint8 (out, in_features)."""
    _check_bits(bits)
    return unpack_rows(qweight.t(), bits, in_features).contiguous()


def pack_qzeros(zero: Tensor, bits: int, offset: int = 1) -> Tensor:
    """Zero points (out, ngroups) -> qzeros int32 (ngroups, ceil(out * bits / 32)) storing zero - offset.

    With the GPTQ v1 ``offset=1`` a zero point of 0 has no code (it would wrap to 2^bits - 1 and
    load as 2^bits), so it is refused; ``offset=0`` is auto-round's raw ``auto_round`` layout.
    """
    _check_bits(bits)
    stored = zero.to(torch.int64) - offset
    if stored.numel() and int(stored.min()) < 0:
        raise ValueError(f"a zero point below {offset} cannot be stored with offset {offset} "
                         "(GPTQ v1 keeps zero-1); store raw zero points (offset=0) instead")
    return pack_rows(stored.t(), bits)  # (ngroups, out) packed along out


def unpack_qzeros(qzeros: Tensor, bits: int, out_features: int, offset: int = 1) -> Tensor:
    """qzeros int32 (ngroups, words) -> zero points int32 (out_features, ngroups), offset added back."""
    _check_bits(bits)
    return (unpack_rows(qzeros, bits, out_features).t().to(torch.int32) + offset).contiguous()


def g_idx(in_features: int, group_size: int) -> Tensor:
    """The trivial group index GPTQ stores without act-order: input channel i is in group i // g."""
    g = in_features if group_size <= 0 else group_size
    return (torch.arange(in_features, dtype=torch.int32) // g).to(torch.int32)

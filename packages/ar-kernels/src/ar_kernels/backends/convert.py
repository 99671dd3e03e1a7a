"""Checkpoint layouts (via ``ar_kernels.packing``) to the kernel layout described in ``base``.

The packing functions work on CPU tensors; conversion runs once per layer after load, so the
round trip through the CPU is paid at load time only. GPTQ-layout weights of 2, 4 and 8 bits
already are the kernel layout and stay where they are.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..registry import LayerDesc


def pack_words(codes_in_out: Tensor, bits: int) -> Tensor:
    """(in, out) codes -> int32 (ceil(in / p), out), p = 32 // bits codes per word, low bits first."""
    p = 32 // bits
    i, o = codes_in_out.shape
    pad = (-i) % p
    c = torch.nn.functional.pad(codes_in_out.to(torch.int64), (0, 0, 0, pad)).reshape(-1, p, o)
    shifts = (torch.arange(p, device=c.device) * bits).view(1, p, 1)
    words = (c << shifts).sum(dim=1)  # disjoint bit ranges: the sum is an OR
    return ((words + 2**31) % 2**32 - 2**31).to(torch.int32)  # reinterpret the low 32 bits as signed


def unpack_words(qweight: Tensor, bits: int, in_features: int) -> Tensor:
    """Inverse of :func:`pack_words` on any device: int32 (words, out) -> int32 codes (in, out)."""
    p = 32 // bits
    shifts = (torch.arange(p, device=qweight.device, dtype=torch.int32) * bits).view(1, p, 1)
    q = (qweight.unsqueeze(1) >> shifts).bitwise_and_((1 << bits) - 1)  # (words, p, out)
    return q.reshape(-1, qweight.shape[-1])[:in_features]


def to_kernel_layout(desc: LayerDesc, qweight: Tensor, qzeros: Tensor, g_idx: Tensor | None
                     ) -> tuple[Tensor, Tensor, Tensor | None]:
    """(qweight, zeros [ngroups, out], g_idx or None when trivial) in the kernel layout."""
    b, i, o = desc.bits, desc.in_features, desc.out_features
    if desc.packing == "awq":
        from ..packing import awq
        codes = awq.unpack(qweight.cpu(), b)[:, :o]  # (in, out)
        zeros = awq.unpack(qzeros.cpu(), b)[:, :o]
        return pack_words(codes, b), zeros, None
    from ..packing import gptq
    offset = 0 if desc.packing == "auto_round" else 1  # auto_round stores raw zero points, GPTQ zero-1
    zeros = gptq.unpack_qzeros(qzeros.cpu(), b, o, offset=offset).t().contiguous()  # (ngroups, out)
    if 32 % b:
        qweight = pack_words(gptq.unpack_qweight(qweight.cpu(), b, i).t(), b)  # 3-bit words span: repack
    return qweight, zeros, _nontrivial(g_idx, desc)


def _nontrivial(g_idx: Tensor | None, desc: LayerDesc) -> Tensor | None:
    """None when g_idx is the plain i // group_size (desc_act=False), else g_idx as int32."""
    if g_idx is None:
        return None
    trivial = torch.arange(desc.in_features, device=g_idx.device) // desc.group
    return None if torch.equal(g_idx.long(), trivial) else g_idx.int()

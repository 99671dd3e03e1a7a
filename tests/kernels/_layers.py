"""Random quantized layers in every checkpoint layout, built through ``ar_kernels.packing``."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ar_kernels import LayerDesc
from ar_kernels.packing import awq, gptq


def random_int_layer(out: int, inp: int, bits: int, group: int, sym: bool, packing: str,
                     dtype: torch.dtype = torch.float16, bias: bool = False, seed: int = 0) -> dict:
    """Codes, scales and zeros plus the checkpoint state dict of one layer, and its reference weight."""
    g = torch.Generator().manual_seed(seed)
    ngroups = -(-inp // (inp if group == -1 else group))
    codes = torch.randint(0, 2**bits, (out, inp), generator=g, dtype=torch.int32).to(torch.uint8)
    scale = (torch.rand(out, ngroups, generator=g) * 0.02 + 0.001).half()  # (out, ngroups) fp16 values
    if sym:
        zero = torch.full((out, ngroups), 2 ** (bits - 1), dtype=torch.int32)
    else:  # GPTQ v1 cannot store a zero point of 0
        lo = 1 if packing == "gptq" else 0
        zero = torch.randint(lo, 2**bits, (out, ngroups), generator=g, dtype=torch.int32)
    gs = inp if group == -1 else group
    gi = torch.arange(inp) // gs
    weight = (codes.float() - zero[:, gi].float()) * scale[:, gi].float()  # (out, in) fp32
    sd = {"scales": scale.t().contiguous()}
    if packing == "awq":
        sd["qweight"] = awq.pack(codes.t().contiguous(), bits)
        sd["qzeros"] = awq.pack(zero.t().contiguous(), bits)
    else:
        sd["qweight"] = gptq.pack_qweight(codes, bits)
        sd["qzeros"] = gptq.pack_qzeros(zero, bits, offset=0 if packing == "auto_round" else 1)
    b = (torch.randn(out, generator=g) * 0.1).to(dtype) if bias else None
    if b is not None:
        sd["bias"] = b
    desc = LayerDesc(in_features=inp, out_features=out, bits=bits, group_size=group, sym=sym, packing=packing,
                     dtype=dtype)
    return {"desc": desc, "state_dict": sd, "weight": weight, "bias": b}


def build(layer: dict, cls: type, device: str = "cpu") -> torch.nn.Module:
    """A QuantLinear of ``cls`` holding ``layer``'s checkpoint tensors, post_init done."""
    q = cls(layer["desc"], bias=layer["bias"] is not None, device="meta")
    q.load_state_dict(layer["state_dict"], assign=True)
    q = q.to(device)
    q.post_init()
    return q


def reference(x: torch.Tensor, layer: dict) -> torch.Tensor:
    """The fake-quant product: the fp32 weight cast to x's dtype, then F.linear."""
    w = layer["weight"].to(x.device, x.dtype)
    b = None if layer["bias"] is None else layer["bias"].to(x.device, x.dtype)
    return F.linear(x, w, b)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-12))

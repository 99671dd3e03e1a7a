"""QuantLinear base classes: checkpoint-layout buffers before load, a kernel layout after.

A QuantLinear is created (on the meta device, before weights load) with buffers named and shaped
as in the checkpoint, so ``load_state_dict`` fills them directly: no full-precision copy exists.
``post_init()`` then converts them once into the layout the backend's kernel reads.

Kernel layout of integer layers (shared by the torch and triton backends):
  qweight int32 [ceil(in / p), out], p = 32 // bits codes per word, code j of word w at bits
          [j*bits, (j+1)*bits) is input row w*p + j  (= GPTQ's layout for 2, 4 and 8 bits)
  scales  [ngroups, out] as stored (fp16), zeros [ngroups, out] same dtype (integers <= 255)
  dq = (q - zero) * scale, computed in fp32 then cast to the activation dtype.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..registry import BackendSpec, LayerDesc


def no_act_order(desc: LayerDesc) -> str | None:
    """Checker of the kernels that assume groups of consecutive input channels."""
    return "g_idx (act-order) checkpoints need the torch backend" if desc.g_idx else None


class QuantLinear(nn.Module):
    """A quantized Linear of one backend. Subclasses set ``spec`` through ``@register_backend``."""

    spec: ClassVar[BackendSpec]

    def __init__(self, desc: LayerDesc, bias: bool = False, device: Any = None) -> None:
        super().__init__()
        self.desc = desc
        self.in_features, self.out_features = desc.in_features, desc.out_features
        self.packed = False  # True once post_init converted the buffers
        self.bias: Tensor | None
        if bias:
            self.register_buffer("bias", torch.zeros(desc.out_features, dtype=desc.dtype, device=device))
        else:
            self.bias = None

    def post_init(self) -> None:
        """Convert the loaded checkpoint buffers into the kernel layout (called once after load)."""
        self.packed = True

    def extra_repr(self) -> str:
        d = self.desc
        return (f"in={d.in_features}, out={d.out_features}, bits={d.bits}, group_size={d.group_size}, "
                f"sym={d.sym}, packing={d.packing}, backend={self.spec.name}")


class IntQuantLinear(QuantLinear):
    """Integer weights in a GPTQ / AWQ / auto_round checkpoint layout."""

    def __init__(self, desc: LayerDesc, bias: bool = False, device: Any = None) -> None:
        super().__init__(desc, bias, device)
        b, i, o, g = desc.bits, desc.in_features, desc.out_features, desc.ngroups
        kw = dict(dtype=torch.int32, device=device)
        if desc.packing == "awq":
            self.register_buffer("qweight", torch.zeros(i, -(-o * b // 32), **kw))
        else:
            self.register_buffer("qweight", torch.zeros(-(-i * b // 32), o, **kw))
        self.register_buffer("qzeros", torch.zeros(g, -(-o * b // 32), **kw))
        self.register_buffer("scales", torch.zeros(g, o, dtype=torch.float16, device=device))
        if desc.g_idx:
            self.register_buffer("g_idx", torch.zeros(i, **kw))
        else:
            self.g_idx: Tensor | None = None

    def post_init(self) -> None:
        if self.packed:
            return
        from .convert import to_kernel_layout  # the packing helpers are imported on first load only
        qweight, zeros, g_idx = to_kernel_layout(self.desc, self.qweight, self.qzeros, self.g_idx)
        dev = self.scales.device
        self.qweight = qweight.to(dev)
        del self.qzeros
        self.register_buffer("zeros", zeros.to(dev, self.scales.dtype))  # (ngroups, out) unpacked zero points
        self.g_idx = None if g_idx is None else g_idx.to(dev)
        self.packed = True

    def group_index(self) -> Tensor:
        """Group of each input channel (in,), from g_idx when the checkpoint reorders groups."""
        if self.g_idx is not None:
            return self.g_idx.long()
        return torch.arange(self.in_features, device=self.qweight.device) // self.desc.group

    def dequantize(self, dtype: torch.dtype | None = None) -> Tensor:
        """The weight (out, in): ``(q - zero) * scale`` in fp32, cast to ``dtype`` (default the layer's)."""
        from .convert import unpack_words
        if not self.packed:
            raise RuntimeError(f"{type(self).__name__}: call post_init() after the weights are loaded")
        d = self.desc
        q = unpack_words(self.qweight, d.bits, d.in_features).float()  # (in, out)
        if self.g_idx is None and d.in_features % d.group == 0:
            # (ngroups, group, out): broadcast each group's zero and scale, no gather
            w = q.view(d.ngroups, d.group, -1).sub_(self.zeros.float().unsqueeze(1))
            w = w.mul_(self.scales.float().unsqueeze(1)).view(d.in_features, -1)
        else:
            gi = self.group_index()
            w = (q - self.zeros[gi].float()) * self.scales[gi].float()
        return w.to(dtype or d.dtype).t().contiguous()


class FloatQuantLinear(QuantLinear):
    """FP8 / MXFP4 / NVFP4 weights: the float element formats (see ``backends.fp``)."""

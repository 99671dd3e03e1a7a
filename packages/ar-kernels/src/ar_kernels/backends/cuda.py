"""The ``cuda`` backend: 4-bit integer layers on NVIDIA GPUs (sm_80+) with CUDA kernels built by NVRTC.

Decode (up to ``gemv_max_rows`` rows) runs ``_w4_mma.cu``'s GEMV: the weight, repacked at load into
the A-fragment order of ``mma.m16n8k16``, k-block-major (``_mma_layout``), is streamed once by 16-byte
cp.async copies into a per-lane ring in shared memory, dequantized two values per instruction and
multiplied on tensor cores with fp32 accumulation. Its dequantization reproduces the torch backend's
rounded weight bit for bit, also in bf16 (the fp16 scale is split into two bf16 halves), so it agrees
with the torch backend to fp32 summation order.
Larger batches dequantize the weight once (same bits) and call cuBLAS.

The kernels are compiled on first use by the NVRTC library that PyTorch's CUDA wheels ship: no
compiler, toolkit or extra package. ``import ar_kernels`` imports none of this.
"""
from __future__ import annotations

import functools
import importlib.resources

import torch
from torch import Tensor
from torch.nn import functional as F

from ..registry import BackendSpec, LayerDesc, register_backend
from .base import IntQuantLinear
from .convert import unpack_words

_GEMV_ARGS = "pppppp" + "iiiiiii"  # qrep scales zeros x bias out | M N Np K ldx ldo has_bias
_DEQUANT_ARGS = "pppp" + "iii"  # qrep scales zeros w | N Np K


def _shape_check(desc: LayerDesc) -> str | None:
    if desc.in_features % 64:
        return f"in_features={desc.in_features} is not a multiple of 64"
    if desc.group_size != -1 and desc.group_size % 16:
        return f"group_size={desc.group_size} is not a multiple of 16"
    if desc.g_idx:
        return "g_idx (act-order) checkpoints need the torch backend"
    return None


def _cuda_build_check(desc: LayerDesc) -> str | None:
    if not torch.version.cuda:
        return "this PyTorch is built without CUDA"
    if torch.cuda.is_available() and torch.cuda.get_device_capability() < (8, 0):
        return "needs an sm_80+ GPU (bf16 tensor-core mma)"
    return None


@functools.cache
def _source() -> str:
    return importlib.resources.files(__package__).joinpath("_w4_mma.cu").read_text()


@functools.cache
def kernels(device: int, bf16: bool, sym: bool, group: int, mt: int = 1, ksplit: int = 4, depth: int = 4,
            kchunk: int = 1, ring: int = 1, spref: int = 1) -> dict:
    """The compiled kernels of one variant on one device (``ar_w4_gemv``, ``ar_w4_dequant``), cached.

    ``kchunk``: the ``AR_KCHUNK`` of the weight layout (0: tile-major); ``ring``: where the weight blocks
    in flight wait (1 a per-lane cp.async ring in shared memory, 0 registers); ``spref``: scales
    prefetched into L1."""
    from ._nvrtc import compile_module
    defines = {"AR_BF16": int(bf16), "AR_SYM": int(sym), "AR_GROUP": group, "AR_MT": mt, "AR_KSPLIT": ksplit,
               "AR_DEPTH": depth, "AR_KCHUNK": kchunk, "AR_RING": ring, "AR_SPREF": spref}
    return compile_module(_source(), {"ar_w4_gemv": _GEMV_ARGS, "ar_w4_dequant": _DEQUANT_ARGS}, device, defines)


def ring_depth(ring: int, ksplit: int, depth: int) -> int:
    """``depth`` halved until the cp.async ring ((depth + 1) x ksplit warps x 512 B) fits 46 KB of static
    shared memory (ring 0 keeps its loads in registers: any depth)."""
    while ring and depth > 1 and (depth + 1) * ksplit * 512 > 46 * 1024:
        depth //= 2
    return depth


@register_backend(BackendSpec(
    name="cuda:int", devices=("cuda",), bits=(4,), packings=("gptq", "auto_round", "awq"),
    dtypes=(torch.float16, torch.bfloat16), priority=60, checks=(_shape_check, _cuda_build_check)))
class CudaIntLinear(IntQuantLinear):
    """4-bit QuantLinear with NVRTC-built tensor-core kernels (decode GEMV; dequantize + cuBLAS above).

    ``kchunk`` (read at ``post_init``): 64-k blocks stored together per 16-column tile in the repacked
    weight, 1 = k-block-major (``_mma_layout``), 0 = tile-major. ``gemv_max_rows`` (<= 32): rows served
    by the GEMV; ``gemv_ksplit`` warps share 16 columns (each a K slice; None: see ``_ksplit``),
    ``gemv_depth`` 16-byte loads in flight per lane, ``gemv_ring`` where they wait (1: a per-lane
    cp.async ring in shared memory, 0: registers), ``gemv_spref`` scales prefetched into L1. Measured
    on an H100 (benchmarks/kernel_bench_notes.md): the defaults are within 2% of the best configs seen
    (``gemv_ksplit=8, gemv_depth=2``: 19.3 us vs 19.8 us at 4096 x 14336). Off CUDA (tests) it computes
    the same product in torch."""

    kchunk = 1
    gemv_max_rows = 32
    gemv_ksplit: int | None = None
    gemv_depth = 4
    gemv_ring = 1
    gemv_spref = 1

    def post_init(self) -> None:
        if self.packed:
            return
        super().post_init()  # -> qweight (K / 8, N) int32, zeros (ngroups, N) unpacked, g_idx or None
        if self.g_idx is not None:
            raise RuntimeError("cuda backend: this layer reorders groups (g_idx); use backend='torch'")
        from ._mma_layout import pack_w4_mma, pad_columns
        d = self.desc
        # (K / 64 / P, N / 16, P, 32, 4)
        self.qweight = pack_w4_mma(unpack_words(self.qweight, 4, d.in_features), self.kchunk)
        self.sym = bool((self.zeros == 8).all())  # GPTQ sym layers: no zero point to load
        self.scales = pad_columns(self.scales.to(torch.float16))
        self.zeros = pad_columns(self.zeros.to(torch.float16), value=8.0)

    def _kchunk_define(self) -> int:
        """AR_KCHUNK for the packed weight: P, or 0 where it is tile-major (P = K / 64)."""
        ko, _, p = self.qweight.shape[:3]
        return 0 if ko == 1 and p & (p - 1) else p

    def _ksplit(self) -> int:
        """Warps per 16 columns: about 3200 warps in all (~24 per SM of an H100), 4 to 16."""
        if self.gemv_ksplit:
            return self.gemv_ksplit
        tiles, nkb, ks = self.scales.shape[1] // 16, self.desc.in_features // 64, 4
        while ks < 16 and tiles * ks < 3200 and nkb >= 4 * ks:
            ks *= 2
        return ks

    def _kernels(self, dtype: torch.dtype, rows: int, ksplit: int = 4) -> dict:
        mt = 1 if rows <= 8 else 2 if rows <= 16 else 4
        return kernels(self.qweight.device.index or 0, dtype == torch.bfloat16, self.sym, self.desc.group, mt,
                       ksplit, ring_depth(self.gemv_ring, ksplit, self.gemv_depth), self._kchunk_define(),
                       self.gemv_ring, self.gemv_spref)

    def forward(self, x: Tensor) -> Tensor:
        d = self.desc
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if x2.stride(-1) != 1 or x2.stride(0) % 8 or x2.data_ptr() % 16:
            x2 = x2.contiguous()  # the kernel reads 16-byte chunks of x
        rows = x2.shape[0]
        if rows == 0:
            return x.new_empty(*shape[:-1], d.out_features)
        if rows > self.gemv_max_rows or not x2.is_cuda:
            bias = None if self.bias is None else self.bias.to(x.dtype)
            return F.linear(x2, self.dequantize(x.dtype), bias).reshape(*shape[:-1], d.out_features)
        out = torch.empty((rows, d.out_features), dtype=x.dtype, device=x.device)
        bias = self.bias if self.bias is None or self.bias.dtype == x.dtype else self.bias.to(x.dtype)
        n, np_, ks = d.out_features, self.scales.shape[1], self._ksplit()
        self._kernels(x.dtype, rows, ks)["ar_w4_gemv"](
            np_ // 16, 32 * ks,
            (self.qweight.data_ptr(), self.scales.data_ptr(), self.zeros.data_ptr(), x2.data_ptr(),
             out.data_ptr() if bias is None else bias.data_ptr(), out.data_ptr(),
             rows, n, np_, d.in_features, x2.stride(0), n, int(bias is not None)))
        return out.reshape(*shape[:-1], n)

    def dequantize(self, dtype: torch.dtype | None = None) -> Tensor:
        """The weight (out, in) in ``dtype``: the torch backend's, bit for bit (a kernel for fp16 / bf16 on CUDA)."""
        d = self.desc
        dtype = dtype or d.dtype
        if not self.packed:
            raise RuntimeError(f"{type(self).__name__}: call post_init() after the weights are loaded")
        if not self.qweight.is_cuda or dtype not in (torch.float16, torch.bfloat16):
            return self._dequantize_torch(dtype)
        w = torch.empty((d.out_features, d.in_features), dtype=dtype, device=self.qweight.device)
        np_ = self.scales.shape[1]
        self._kernels(dtype, 1, self._ksplit())["ar_w4_dequant"](
            np_ // 16, 256, (self.qweight.data_ptr(), self.scales.data_ptr(), self.zeros.data_ptr(), w.data_ptr(),
                             d.out_features, np_, d.in_features))
        return w

    def _dequantize_torch(self, dtype: torch.dtype) -> Tensor:
        """The reference dequantization from the repacked words: ``(q - zero) * scale`` in fp32, cast once."""
        from ._mma_layout import unpack_w4_mma
        d = self.desc
        q = unpack_w4_mma(self.qweight, d.in_features, d.out_features).float()  # (in, out)
        gi = torch.arange(d.in_features, device=q.device) // d.group
        n = d.out_features
        w = (q - self.zeros[gi, :n].float()) * self.scales[gi, :n].float()
        return w.to(dtype).t().contiguous()


__all__ = ["CudaIntLinear", "kernels"]

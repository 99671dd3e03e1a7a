"""The ``cuda`` backend: 4-bit integer layers on NVIDIA GPUs (sm_80+) with CUDA kernels built by NVRTC.

Decode (up to ``gemv_max_rows`` rows) runs ``_w4_mma.cu``'s GEMV: the weight, repacked at load into
the A-fragment order of ``mma.m16n8k16`` in chunks of a few 64-k blocks (``_mma_layout``), is streamed
once by 16-byte loads into registers a step ahead, dequantized two values per instruction and
multiplied on tensor cores with fp32 accumulation. On sm_90+ it is launched as a programmatic dependent: it
starts while the previous kernel finishes, prefetches its first weight block to L2 and waits for that kernel
before it reads x (8 GEMVs in a CUDA graph, H100: 14.1 -> 13.0 us each). Its dequantization reproduces the torch backend's
rounded weight bit for bit, also in bf16 (the fp16 scale is split into two bf16 halves, once at load:
``gemv_params``), so it agrees with the torch backend to fp32 summation order.
Mid-size batches (up to ``gemm_max_rows``) run its GEMM: 64 rows x 128 columns per block, x and the weight
through a cp.async ring in shared memory, the same dequantization and tensor-core mma, the K loop split over
blocks where the columns alone would not fill the GPU (fp32 partials summed in a fixed order). Larger batches
dequantize the weight once (same bits) and call cuBLAS.

The kernels are compiled on first use by the NVRTC library that PyTorch's CUDA wheels ship: no
compiler, toolkit or extra package. ``import ar_kernels`` imports none of this.

Eager calls launch through a plan cached per (rows, dtype); under ``torch.compile`` the layer calls the same kernels
as PyTorch operators (``ar_kernels::cuda_int4_gemv``, ``ar_kernels::cuda_int4_gemm``,
``ar_kernels::cuda_int4_dequant``), so a compiled model keeps one graph and CUDA graphs capture it.
"""
from __future__ import annotations

import functools
import importlib.resources
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.nn import functional as F

from ..registry import BackendSpec, LayerDesc, register_backend
from .base import IntQuantLinear, no_act_order
from .convert import unpack_words

if TYPE_CHECKING:
    from ._nvrtc import Kernel

_GEMV_ARGS = "ppppp" + "iiiiii"  # qrep params x bias out | M N K ldx ldo has_bias
_DEQUANT_ARGS = "pppp" + "iii"  # qrep scales zeros w | N Np K
_GEMM_ARGS = "pppppp" + "iiiiiii"  # qrep params x bias out ws | M N K ldx ldo has_bias ksplit
_REDUCE_ARGS = "ppp" + "iiiii"  # ws bias out | M N ldo has_bias ksplit
# The GEMM's launch follows _w4_mma.cu's default block (AR_GTW 2, AR_GMT 8: 128 threads, 64 rows) and its
# AR_GSTAGES ring slots of AR_GSLOT bytes.
_GEMM_SMEM = 3 * (64 * 72 * 2 + 8 * 512)
_GEMV_DTYPES = (torch.float16, torch.bfloat16)  # other activations: dequantize + F.linear


def _shape_check(desc: LayerDesc) -> str | None:
    if desc.in_features % 64:
        return f"in_features={desc.in_features} is not a multiple of 64"
    if desc.group_size != -1 and desc.group_size % 16:
        return f"group_size={desc.group_size} is not a multiple of 16"
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
def shared_limits(device: int) -> tuple[int, int, int]:
    """Shared memory of a device in bytes: per SM, per block (opt-in), reserved by the driver per block."""
    from ._nvrtc import device_attribute
    return tuple(device_attribute(device, a) for a in (81, 97, 111))  # type: ignore[return-value]


def xsmem_bytes(rows: int, k: int, ksplit: int, nt: int, blocks_per_sm: int, limits: tuple[int, int, int]) -> int:
    """Dynamic shared memory for a GEMV that stages ``rows`` rows of x (``k`` wide; rows K + 8 elements apart),
    or 0 where the block would not fit, or ``blocks_per_sm`` of them (its launch bounds) would not fit an SM."""
    per_sm, per_block, reserved = limits
    mt = _row_tiles(rows)
    nbytes = min(rows, 8 * mt) * (k + 8) * 2
    block = ksplit * nt * mt * 4 * 32 * 4 + nbytes  # + the kernel's static reduction buffer
    return nbytes if block <= per_block and blocks_per_sm * (block + reserved) <= per_sm else 0


def _row_tiles(rows: int) -> int:
    """n8 tiles of activation rows in the GEMV (AR_MT)."""
    return 1 if rows <= 8 else 2 if rows <= 16 else 4


@functools.cache
def kernels(device: int, bf16: bool, sym: bool, group: int, mt: int = 1, ksplit: int = 4, depth: int = 2,
            kchunk: int = 2, nt: int = 1, xsmem: bool = False) -> dict:
    """The compiled kernels of one variant on one device (``ar_w4_gemv``, ``ar_w4_dequant``, ``ar_w4_gemm``,
    ``ar_w4_gemm_reduce``), cached.

    ``depth``: 64-k blocks per GEMV step (each lane loads the next step's while it computes one);
    ``kchunk``: the weight layout's P (a power of 2 dividing ``depth``); ``nt``: 16-column tiles per
    GEMV warp (the grid is tiles / nt blocks); ``xsmem``: the GEMV stages x in shared memory (the launch
    passes rows * (in_features + 8) * 2 bytes of it)."""
    from ._nvrtc import compile_module
    defines = gemv_defines(bf16, sym, group, mt, ksplit, depth, kchunk, nt, xsmem)
    names = {"ar_w4_gemv": _GEMV_ARGS, "ar_w4_dequant": _DEQUANT_ARGS, "ar_w4_gemm": _GEMM_ARGS,
             "ar_w4_gemm_reduce": _REDUCE_ARGS}
    return compile_module(_source(), names, device, defines, dependent=("ar_w4_gemv",))


def gemv_defines(bf16: bool, sym: bool, group: int, mt: int, ksplit: int, depth: int, kchunk: int, nt: int,
                 xsmem: bool) -> dict[str, int]:
    """The ``_w4_mma.cu`` macros of one variant (see :func:`kernels`)."""
    if depth % kchunk:
        raise ValueError(f"the GEMV step ({depth} blocks) must be a multiple of the layout's chunk ({kchunk})")
    return {"AR_BF16": int(bf16), "AR_SYM": int(sym), "AR_GROUP": group, "AR_MT": mt, "AR_KSPLIT": ksplit,
            "AR_DEPTH": depth, "AR_KCHUNK": kchunk, "AR_MINB": min_blocks(mt, ksplit, group, depth, nt),
            "AR_NT": nt, "AR_NACC": 1 if nt == 2 else 2, "AR_XSMEM": int(xsmem)}


def min_blocks(mt: int, ksplit: int, group: int, depth: int, nt: int = 1) -> int:
    """GEMV blocks per SM the registers must allow (``__launch_bounds__``): 32 warps for one n8 tile of
    rows and steps of <= 2 blocks (<= 64 registers), fewer for more rows, larger steps or groups that
    are not whole 64-k blocks: the most that compile without spilling. Two tiles per warp (one-block
    steps, one accumulator set) keep 32 warps (62-64 registers); four take 16 (123)."""
    if nt > 1:
        return max(1, (32 if nt == 2 else 16) // ksplit)
    warps = {1: 32, 2: 16}.get(mt, 8)
    if depth > 2 or group % 64:
        warps = warps * 3 // 4
    return max(1, warps // ksplit)


def _stage_bytes(rows: int, k: int, ksplit: int, nt: int, group: int, depth: int, device: int) -> int:
    """Shared memory for staging x in the GEMV of this plan on ``device`` (0 where it does not fit)."""
    return xsmem_bytes(rows, k, ksplit, nt, min_blocks(_row_tiles(rows), ksplit, group, depth, nt), shared_limits(device))


def _resolve(rows: int, dtype: torch.dtype, qweight: Tensor, group: int, sym: bool, nt: int, ksplit: int, depth: int,
             stage: bool) -> tuple:
    """(kernel, grid, threads, shared bytes) of the GEMV of ``rows`` rows on ``qweight``'s device (compiled once)."""
    device, kchunk = qweight.device.index or 0, qweight.shape[2]
    smem = _stage_bytes(rows, qweight.shape[0] * kchunk * 64, ksplit, nt, group, depth, device) if stage else 0
    kernel = kernels(device, dtype == torch.bfloat16, sym, group, _row_tiles(rows), ksplit, depth, kchunk, nt,
                     smem > 0)["ar_w4_gemv"]
    kernel.allow_shared(smem)
    return kernel, qweight.shape[1] // nt, 32 * ksplit, smem


def _in_16_byte_chunks(x: Tensor) -> Tensor:
    """``x``, or a contiguous copy where the kernels could not read its rows in 16-byte chunks."""
    if not x.is_contiguous() or x.data_ptr() % 16:
        return x.clone(memory_format=torch.contiguous_format)
    return x


def _run_gemv(x: Tensor, kernel: Kernel, grid: int, threads: int, smem: int, qweight: int, params: int,
              bias: Tensor | None, n: int) -> Tensor:
    """Launch the GEMV on ``x`` (..., K) with the weight and constants at ``qweight`` / ``params``: (..., n)."""
    k = x.shape[-1]
    x = _in_16_byte_chunks(x)
    out = x.new_empty(x.shape[:-1] + (n,))
    kernel(grid, threads, (qweight, params, x.data_ptr(), out.data_ptr() if bias is None else bias.data_ptr(),
                           out.data_ptr(), x.numel() // k, n, k, k, n, int(bias is not None)), smem)
    return out


def gemm_ksplit(col_blocks: int, row_blocks: int, k_blocks: int, sms: int) -> int:
    """K ranges of the GEMM: doubled (up to 8) while its blocks fill less than 1.5 per SM and each range keeps at
    least 8 64-k blocks. H100, 33-256 rows: 4096 -> 14336 best at 2 / 1, 14336 -> 4096 at 8 / 4 / 2
    (benchmarks/kernel_bench_notes.md, pass 12)."""
    ks = 1
    while ks < 8 and col_blocks * row_blocks * ks < 1.5 * sms and k_blocks // (2 * ks) >= 8:
        ks *= 2
    return ks


def _run_gemm(x: Tensor, qweight: Tensor, params: Tensor, bias: Tensor | None, n: int, group: int,
              sym: bool) -> Tensor:
    """``x`` (..., K) @ W by the GEMM (N a multiple of 128, layout chunk 1): (..., n)."""
    k = x.shape[-1]
    x = _in_16_byte_chunks(x)
    m = x.numel() // k
    device = qweight.device.index or 0
    kern = kernels(device, x.dtype == torch.bfloat16, sym, group, 1, 4, 2, 1, 1)  # the dequantization's variant
    ks = gemm_ksplit(n // 128, -(-m // 64), k // 64, _sm_count(device))
    out = x.new_empty(x.shape[:-1] + (n,))
    ws = torch.empty((ks, m, n), dtype=torch.float32, device=x.device) if ks > 1 else out
    b = out if bias is None else bias
    kern["ar_w4_gemm"](n // 128 * ks * -(-m // 64), 128, (qweight.data_ptr(), params.data_ptr(), x.data_ptr(),
                                                          b.data_ptr(), out.data_ptr(), ws.data_ptr(), m, n, k, k, n,
                                                          int(bias is not None), ks), _GEMM_SMEM)
    if ks > 1:
        kern["ar_w4_gemm_reduce"](-(-m * n // 512), 256, (ws.data_ptr(), b.data_ptr(), out.data_ptr(), m, n, n,
                                                          int(bias is not None), ks))
    return out


@functools.cache
def _sm_count(device: int) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _dequantize_ref(qweight: Tensor, scales: Tensor, zeros: Tensor, k: int, n: int, group: int,
                    dtype: torch.dtype) -> Tensor:
    """The reference dequantization from the repacked words: ``(q - zero) * scale`` in fp32, cast once; (n, k)."""
    from ._mma_layout import unpack_w4_mma
    q = unpack_w4_mma(qweight, k, n).float()  # (in, out)
    gi = torch.arange(k, device=q.device) // group
    w = (q - zeros[gi, :n].float()) * scales[gi, :n].float()
    return w.to(dtype).t().contiguous()


# Explicit schemas: torch 2.4 (our floor) infers none from this module's postponed (string) annotations.
@torch.library.custom_op("ar_kernels::cuda_int4_gemv", mutates_args=(), schema=(
    "(Tensor x, Tensor qweight, Tensor params, Tensor scales, Tensor zeros, Tensor? bias, int out_features, int group, "
    "bool sym, int nt, int ksplit, int depth, bool stage) -> Tensor"))
def cuda_int4_gemv(x: Tensor, qweight: Tensor, params: Tensor, scales: Tensor, zeros: Tensor, bias: Tensor | None,
                   out_features: int, group: int, sym: bool, nt: int, ksplit: int, depth: int, stage: bool) -> Tensor:
    """``x @ W.T (+ bias)`` for a ``cuda:int`` layer's buffers by its decode GEMV, as one PyTorch operator: under
    ``torch.compile`` the layer calls this, so the graph keeps the GEMV whole (no break at a Python launch) and
    CUDA graphs capture it. Off CUDA: the torch backend's product from the same buffers."""
    k = x.shape[-1]
    if not x.is_cuda:
        return F.linear(x, _dequantize_ref(qweight, scales, zeros, k, out_features, group, x.dtype), bias)
    kernel, grid, threads, smem = _resolve(x.numel() // k, x.dtype, qweight, group, sym, nt, ksplit, depth, stage)
    return _run_gemv(x, kernel, grid, threads, smem, qweight.data_ptr(), params.data_ptr(), bias, out_features)


@cuda_int4_gemv.register_fake
def _(x: Tensor, qweight: Tensor, params: Tensor, scales: Tensor, zeros: Tensor, bias: Tensor | None,
      out_features: int, group: int, sym: bool, nt: int, ksplit: int, depth: int, stage: bool) -> Tensor:
    return x.new_empty(x.shape[:-1] + (out_features,))


@torch.library.custom_op("ar_kernels::cuda_int4_gemm", mutates_args=(), schema=(
    "(Tensor x, Tensor qweight, Tensor params, Tensor scales, Tensor zeros, Tensor? bias, int out_features, int group, "
    "bool sym) -> Tensor"))
def cuda_int4_gemm(x: Tensor, qweight: Tensor, params: Tensor, scales: Tensor, zeros: Tensor, bias: Tensor | None,
                   out_features: int, group: int, sym: bool) -> Tensor:
    """``x @ W.T (+ bias)`` by the mid-batch GEMM, as one PyTorch operator (the layer calls it under
    ``torch.compile``). Off CUDA: the torch backend's product from the same buffers."""
    if not x.is_cuda:
        return F.linear(x, _dequantize_ref(qweight, scales, zeros, x.shape[-1], out_features, group, x.dtype), bias)
    return _run_gemm(x, qweight, params, bias, out_features, group, sym)


@cuda_int4_gemm.register_fake
def _(x: Tensor, qweight: Tensor, params: Tensor, scales: Tensor, zeros: Tensor, bias: Tensor | None,
      out_features: int, group: int, sym: bool) -> Tensor:
    return x.new_empty(x.shape[:-1] + (out_features,))


@torch.library.custom_op("ar_kernels::cuda_int4_dequant", mutates_args=(), schema=(
    "(Tensor qweight, Tensor scales, Tensor zeros, int in_features, int out_features, int group, bool sym, "
    "ScalarType dtype) -> Tensor"))
def cuda_int4_dequant(qweight: Tensor, scales: Tensor, zeros: Tensor, in_features: int, out_features: int, group: int,
                      sym: bool, dtype: torch.dtype) -> Tensor:
    """A ``cuda:int`` layer's weight (out, in) in ``dtype``, the torch backend's bit for bit, as one PyTorch operator
    (the layer calls it under ``torch.compile`` above the GEMV's rows). Off CUDA or in other dtypes: the reference."""
    if not qweight.is_cuda or dtype not in _GEMV_DTYPES:
        return _dequantize_ref(qweight, scales, zeros, in_features, out_features, group, dtype)
    w = torch.empty((out_features, in_features), dtype=dtype, device=qweight.device)
    kchunk = qweight.shape[2]  # any variant of the module holds the dequantization kernel: one of depth >= kchunk
    kernels(qweight.device.index or 0, dtype == torch.bfloat16, sym, group, 1, 4, max(2, kchunk), kchunk, 1)[
        "ar_w4_dequant"](qweight.shape[1], 256, (qweight.data_ptr(), scales.data_ptr(), zeros.data_ptr(), w.data_ptr(),
                                                 out_features, scales.shape[1], in_features))
    return w


@cuda_int4_dequant.register_fake
def _(qweight: Tensor, scales: Tensor, zeros: Tensor, in_features: int, out_features: int, group: int, sym: bool,
      dtype: torch.dtype) -> Tensor:
    return qweight.new_empty((out_features, in_features), dtype=dtype)


@register_backend(BackendSpec(
    name="cuda:int", devices=("cuda",), bits=(4,), packings=("gptq", "auto_round", "awq"),
    dtypes=(torch.float16, torch.bfloat16), priority=60,
    checks=(_shape_check, no_act_order, _cuda_build_check)))
class CudaIntLinear(IntQuantLinear):
    """4-bit QuantLinear with NVRTC-built tensor-core kernels: a GEMV for decode, a GEMM for mid-size batches
    (``gemm_max_rows``, where the output width is a multiple of 128), dequantize + cuBLAS above.

    ``kchunk`` (read at ``post_init``): 64-k blocks stored together per 16-column tile in the repacked
    weight (``_mma_layout``). ``gemv_max_rows`` (<= 32): rows served by the GEMV; ``gemv_ksplit`` warps
    share 16 columns (each a K slice; None: see ``_ksplit``), ``gemv_depth`` 64-k blocks per step (a
    power of 2; raised to the layout's chunk); ``gemv_nt`` 16-column tiles per warp for up to 8 rows
    (1, 2 or 4; None: see ``_nt``; more than 1 runs one-block steps and needs ``kchunk`` 1); ``gemv_xsmem``
    stages x in shared memory once per block (None: see ``_wants_xsmem``).
    Measured on an H100: benchmarks/kernel_bench_notes.md.
    Off CUDA (tests) it computes the same product in torch."""

    kchunk = 1
    gemv_max_rows = 32
    gemm_max_rows = 256
    gemv_ksplit: int | None = None
    gemv_depth = 2
    gemv_nt: int | None = None
    gemv_xsmem: bool | None = None

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
        self._params: dict[torch.dtype, Tensor] = {}
        self._plans: dict[tuple, tuple] = {}  # (rows, dtype) -> _launch, () where the GEMV does not serve it
        if d.dtype in _GEMV_DTYPES:
            self.gemv_params(d.dtype)

    def gemv_params(self, dtype: torch.dtype) -> Tensor:
        """The GEMV's per-group constants for ``dtype`` activations (``_mma_layout.gemv_params``), built once."""
        p = self._params.get(dtype)
        if p is None or p.device != self.scales.device:
            from ._mma_layout import gemv_params
            p = self._params[dtype] = gemv_params(self.scales, self.zeros, dtype == torch.bfloat16, self.sym)
        return p

    def _nt(self, rows: int) -> int:
        """Tiles per GEMV warp: 4 where that still leaves >= 128 blocks, else 2 where >= 64, else 1 (also
        above 8 rows or with a layout chunk > 1). H100, 1 row: 4096 -> 14336 16.5 vs 17.3 us at 4,
        14336 -> 4096 16.5 vs 17.1 at 2 (benchmarks/kernel_bench_notes.md, pass 7)."""
        tiles = self.scales.shape[1] // 16
        if rows > 8 or self.qweight.shape[2] != 1:
            return 1
        if self.gemv_nt:
            return self.gemv_nt if tiles % self.gemv_nt == 0 else 1
        return 4 if tiles % 4 == 0 and tiles >= 512 else 2 if tiles % 2 == 0 and tiles >= 128 else 1

    def _ksplit(self, nt: int = 1) -> int:
        """Warps per block (each a K slice of at least two 64-k blocks of its columns), 4 to 32: doubled while
        the grid has fewer than ~3200 warps (~24 per SM of an H100) for one tile per warp, 1600 for four
        (their registers allow 16 per SM), 4096 for two (32 per SM). H100, 1 row, 14336 -> 4096 (two tiles):
        32 warps 16.4 us, 16 warps 17.2 (benchmarks/kernel_bench_notes.md, pass 8)."""
        if self.gemv_ksplit:
            return self.gemv_ksplit
        blocks, nkb, ks = self.scales.shape[1] // 16 // nt, self.desc.in_features // 64, 4
        target, most = {1: (3200, 16), 2: (4096, 32)}.get(nt, (1600, 16))
        while ks < most and blocks * ks < target and nkb >= 4 * ks:
            ks *= 2
        return ks

    def _wants_xsmem(self) -> bool:
        """Whether the GEMV stages x in shared memory (where the device fits it, :func:`xsmem_bytes`): for long rows
        (in_features >= 8192) unless ``gemv_xsmem`` says. H100, 1 row, 14336 -> 4096: 16.4 vs 16.5 us at 32 warps
        per block, 17.2 vs 18.2 at 16; 4096 -> 14336: 16.9 vs 16.4 (benchmarks/kernel_bench_notes.md, pass 8)."""
        return self.gemv_xsmem if self.gemv_xsmem is not None else self.desc.in_features >= 8192

    def _config(self, rows: int) -> tuple[int, int, int, bool]:
        """(tiles per warp, warps per block, 64-k blocks per step, stage x) of the GEMV for ``rows`` rows: plain
        Python on the layer's settings and shapes, which torch.compile traces."""
        nt = self._nt(rows)
        return nt, self._ksplit(nt), self._depth(nt), self._wants_xsmem()

    def _depth(self, nt: int) -> int:
        return 1 if nt > 1 else max(self.gemv_depth, self.qweight.shape[2])

    def _kernels(self, dtype: torch.dtype, rows: int, ksplit: int = 4, nt: int = 1, xsmem: bool = False) -> dict:
        return kernels(self.qweight.device.index or 0, dtype == torch.bfloat16, self.sym, self.desc.group,
                       _row_tiles(rows), ksplit, self._depth(nt), self.qweight.shape[2], nt, xsmem)

    def forward(self, x: Tensor) -> Tensor:
        n, k = self.out_features, self.in_features
        if x.shape[-1] != k:
            raise ValueError(f"{type(self).__name__}: the input has {x.shape[-1]} features, the layer takes {k}")
        rows = x.numel() // k
        if torch.compiler.is_compiling():  # the kernels as operators: the compiled graph keeps them whole
            bias = None if self.bias is None else self.bias.to(x.dtype)
            if 0 < rows <= self.gemv_max_rows and x.dtype in _GEMV_DTYPES:
                return cuda_int4_gemv(x, self.qweight, self.gemv_params(x.dtype), self.scales, self.zeros, bias, n,
                                      self.desc.group, self.sym, *self._config(rows))
            if self._gemm_serves(rows, x.dtype):
                return cuda_int4_gemm(x, self.qweight, self.gemv_params(x.dtype), self.scales, self.zeros, bias, n,
                                      self.desc.group, self.sym)
            plan = None  # dequantize (an operator too) + F.linear
        else:
            plan = self._plan(rows, x.dtype) if x.is_cuda and 0 < rows <= self.gemv_max_rows else None
        if plan is None:  # no rows, more than the GEMV serves, off CUDA or another dtype
            if rows == 0:
                return x.new_empty(x.shape[:-1] + (n,))
            bias = None if self.bias is None else self.bias.to(x.dtype)
            if x.is_cuda and self._gemm_serves(rows, x.dtype):
                return _run_gemm(x, self.qweight, self.gemv_params(x.dtype), bias, n, self.desc.group, self.sym)
            return F.linear(x, self.dequantize(x.dtype), bias)  # dequantize + cuBLAS
        bias = self.bias if self.bias is None or self.bias.dtype == x.dtype else self.bias.to(x.dtype)
        return _run_gemv(x, *plan, bias, n)

    def _gemm_serves(self, rows: int, dtype: torch.dtype) -> bool:
        """Whether the mid-batch GEMM takes ``rows`` rows: above the GEMV's, up to ``gemm_max_rows``, with 128-column
        blocks and the chunk-1 layout."""
        return (self.gemv_max_rows < rows <= self.gemm_max_rows and dtype in _GEMV_DTYPES
                and self.out_features % 128 == 0 and self.qweight.shape[2] == 1)

    def _plan(self, rows: int, dtype: torch.dtype) -> tuple | None:
        """The GEMV launch for ``rows`` rows of ``dtype`` activations, worked out once per shape (it costs ~8 us of
        Python per call otherwise); None where the GEMV does not serve that dtype. Any attribute set on the layer
        (``post_init``, a ``gemv_*`` setting) or a move (``.to``) drops the plans."""
        key = (rows, dtype)
        plans = self.__dict__.get("_plans")  # made by post_init
        plan = plans.get(key) if plans is not None else None
        if plan is None:
            if plans is None:
                raise RuntimeError(f"{type(self).__name__}: call post_init() after the weights are loaded")
            plan = plans[key] = self._launch(rows, dtype) if dtype in _GEMV_DTYPES else ()
        return plan or None

    def _launch(self, rows: int, dtype: torch.dtype) -> tuple:
        """(kernel, grid, threads, shared bytes, weight and constants addresses) of the GEMV for ``rows`` rows."""
        return (*_resolve(rows, dtype, self.qweight, self.desc.group, self.sym, *self._config(rows)),
                self.qweight.data_ptr(), self.gemv_params(dtype).data_ptr())

    def __setattr__(self, name: str, value: object) -> None:
        self.__dict__.get("_plans", {}).clear()
        super().__setattr__(name, value)

    def _apply(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]  # .to / .cuda / .half move the buffers
        self.__dict__.get("_plans", {}).clear()
        return super()._apply(fn, *args, **kwargs)

    def __getstate__(self) -> dict:
        """Copies and pickles leave the plans out (they hold ctypes launch handles)."""
        state = self.__dict__.copy()
        if "_plans" in state:
            state["_plans"] = {}
        return state

    def dequantize(self, dtype: torch.dtype | None = None) -> Tensor:
        """The weight (out, in) in ``dtype``: the torch backend's, bit for bit (a kernel for fp16 / bf16 on CUDA)."""
        d = self.desc
        if not self.packed:
            raise RuntimeError(f"{type(self).__name__}: call post_init() after the weights are loaded")
        return cuda_int4_dequant(self.qweight, self.scales, self.zeros, d.in_features, d.out_features, d.group,
                                 self.sym, dtype or d.dtype)


__all__ = ["CudaIntLinear", "cuda_int4_dequant", "cuda_int4_gemm", "cuda_int4_gemv", "kernels"]

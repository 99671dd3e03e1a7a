"""Compile CUDA C++ at run time with NVRTC and launch it on torch's stream (ctypes; torch alone).

PyTorch's CUDA wheels ship NVRTC (``nvidia-cuda-nvrtc``, loaded by torch), so the ``cuda`` backend
needs no compiler, CUDA toolkit or build step: ``compile_module`` turns a source with ``extern "C"``
kernels into a cubin for the device's architecture in about a second, and ``Kernel`` launches one
with ``cuLaunchKernel`` on the current stream (so CUDA graphs capture it).

Kernels named ``dependent`` are launched (sm_90+) as programmatic dependents (``cuLaunchKernelEx``): they may
start before the previous kernel in the stream ends and must wait for it themselves (``griddepcontrol.wait``)
before they read its results or write memory. ``AR_KERNELS_PDL=0`` (read when a module is compiled) turns
that off.

>>> mod = compile_module(src, ["my_kernel"], defines={"N": 4})  # doctest: +SKIP
>>> mod["my_kernel"](grid=132, block=128, args=(x.data_ptr(), 4))  # doctest: +SKIP
"""
from __future__ import annotations

import ctypes
import functools
import glob
import os
import struct
import sys
import threading
from collections.abc import Collection, Sequence

import torch

from ..errors import MissingDependencyError

_INSTALL = ('NVRTC was not found: install PyTorch with CUDA (its wheels depend on nvidia-cuda-nvrtc) '
            'or point AR_NVRTC_LIBRARY to libnvrtc.so')


def _wheel_dirs() -> list[str]:
    """Library folders of the nvidia-cuda-nvrtc wheels on sys.path (and $AR_NVRTC_LIBRARY's)."""
    dirs = [os.path.dirname(os.environ.get("AR_NVRTC_LIBRARY", ""))]
    for base in sys.path:
        dirs += glob.glob(os.path.join(base, "nvidia", "cu*", "lib")) + glob.glob(
            os.path.join(base, "nvidia", "cuda_nvrtc", "lib"))
    return [d for d in dirs if d and os.path.isdir(d)]


@functools.lru_cache(maxsize=1)
def nvrtc_library() -> ctypes.CDLL:
    """libnvrtc: $AR_NVRTC_LIBRARY, the one torch loaded, or the nvidia-cuda-nvrtc wheel's."""
    majors = [torch.version.cuda.split(".")[0]] if torch.version.cuda else ["13", "12"]
    dirs = _wheel_dirs()
    # libnvrtc dlopens libnvrtc-builtins by name at compile time: load it first so the name resolves
    for path in sorted({p for d in dirs for m in majors for p in glob.glob(os.path.join(d, f"libnvrtc-builtins.so.{m}*"))
                        if ".alt." not in p}):
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            pass
    names = [os.environ.get("AR_NVRTC_LIBRARY", "")] + [f"libnvrtc.so.{m}" for m in majors] + ["libnvrtc.so"]
    names += [os.path.join(d, f"libnvrtc.so.{m}") for d in dirs for m in majors]
    for name in filter(None, names):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise MissingDependencyError(_INSTALL)


@functools.lru_cache(maxsize=1)
def _driver() -> ctypes.CDLL:
    lib = ctypes.CDLL("libcuda.so.1")
    lib.cuLaunchKernel.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint,
                                   ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p,
                                   ctypes.c_void_p, ctypes.c_void_p]
    if hasattr(lib, "cuLaunchKernelEx"):  # CUDA 12+ drivers
        lib.cuLaunchKernelEx.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    return lib


class LaunchAttribute(ctypes.Structure):
    """CUlaunchAttribute: an id, 4 bytes of padding, a 64-byte value union."""
    _fields_ = [("id", ctypes.c_int), ("pad", ctypes.c_char * 4), ("value", ctypes.c_int * 16)]


class LaunchConfig(ctypes.Structure):
    """CUlaunchConfig (cuLaunchKernelEx's first argument)."""
    _fields_ = [("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3), ("shared", ctypes.c_uint),
                ("stream", ctypes.c_void_p), ("attrs", ctypes.POINTER(LaunchAttribute)), ("nattrs", ctypes.c_uint)]


_PROGRAMMATIC_STREAM_SERIALIZATION = 6  # CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION


def dependent_launch_config() -> LaunchConfig:
    """A launch configuration that lets the kernel overlap the previous one in its stream (grid, block, shared
    bytes and stream are filled per launch)."""
    attr = LaunchAttribute(id=_PROGRAMMATIC_STREAM_SERIALIZATION)
    attr.value[0] = 1
    cfg = LaunchConfig(grid=(1, 1, 1), block=(1, 1, 1), attrs=ctypes.pointer(attr), nattrs=1)
    cfg._attr = attr  # kept alive with the configuration
    return cfg


def _launches_dependents(device: int) -> bool:
    """Whether kernels on ``device`` can be launched as programmatic dependents: sm_90+, a driver with
    cuLaunchKernelEx, and not turned off by ``AR_KERNELS_PDL=0``."""
    return (os.environ.get("AR_KERNELS_PDL", "1") != "0" and torch.cuda.get_device_capability(device)[0] >= 9
            and hasattr(_driver(), "cuLaunchKernelEx"))


def _check(rc: int, what: str) -> None:
    if rc:
        msg = ctypes.c_char_p()
        _driver().cuGetErrorString(rc, ctypes.byref(msg))
        raise RuntimeError(f"{what} failed: CUDA error {rc} ({(msg.value or b'?').decode()})")


def compile_cubin(source: str, arch: str, defines: dict[str, int] | None = None) -> bytes:
    """``source`` compiled by NVRTC for ``arch`` (``"sm_90"``), ``defines`` as ``-DNAME=VALUE``."""
    lib = nvrtc_library()
    prog = ctypes.c_void_p()
    rc = lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"ar_kernels.cu", 0, None, None)
    if rc:
        raise RuntimeError(f"nvrtcCreateProgram failed with status {rc}")
    opts = [f"--gpu-architecture={arch}", "--std=c++17"] + [f"-D{k}={v}" for k, v in (defines or {}).items()]
    arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
    try:
        rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
        if rc:
            size = ctypes.c_size_t()
            lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetProgramLog(prog, log)
            raise RuntimeError(f"NVRTC could not compile the kernel ({' '.join(opts)}):\n{log.value.decode()}")
        size = ctypes.c_size_t()
        lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
        cubin = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetCUBIN(prog, cubin)
        return cubin.raw
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _raw_stream(device: int) -> int:
    """The current CUDA stream's handle (torch's C accessor when present: no Stream object)."""
    get = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    return get(device) if get is not None else torch.cuda.current_stream(device).cuda_stream


class Kernel:
    """One ``extern "C"`` kernel; ``argspec`` gives each argument's kind: ``p`` pointer, ``i`` int32."""

    def __init__(self, func: ctypes.c_void_p, argspec: str, device: int, dependent: bool = False) -> None:
        self.func, self.device = func, device
        self._config = dependent_launch_config() if dependent else None
        # One 8-byte slot per argument, filled by a single struct.pack_into per launch (ctypes objects per
        # slot cost ~2 us more per call); the parameter array points at the slots.
        self._format = "=" + "".join("Q" if t == "p" else "i4x" for t in argspec)
        self._slots = ctypes.create_string_buffer(8 * len(argspec))
        base = ctypes.addressof(self._slots)
        self._params = (ctypes.c_void_p * len(argspec))(*[base + 8 * i for i in range(len(argspec))])
        self._lock = threading.Lock()  # the slots are reused: one launch at a time
        self._shared_allowed = 0

    def __call__(self, grid: int, block: int, args: Sequence[int], smem: int = 0) -> None:
        """Launch on the current stream of the kernel's device (captured by a CUDA graph)."""
        if torch.cuda.current_device() != self.device:  # the driver launches in the current context
            with torch.cuda.device(self.device):
                return self(grid, block, args, smem)
        stream = _raw_stream(self.device)
        with self._lock:
            struct.pack_into(self._format, self._slots, 0, *args)
            cfg = self._config
            if cfg is None:
                rc = _driver().cuLaunchKernel(self.func, grid, 1, 1, block, 1, 1, smem, stream, self._params, None)
            else:
                cfg.grid[0], cfg.block[0], cfg.shared, cfg.stream = grid, block, smem, stream
                rc = _driver().cuLaunchKernelEx(ctypes.byref(cfg), self.func, self._params, None)
        if rc:
            _check(rc, "cuLaunchKernel" if cfg is None else
                   "cuLaunchKernelEx as a programmatic dependent launch (AR_KERNELS_PDL=0 launches plainly)")
        return None

    def allow_shared(self, nbytes: int) -> None:
        """Lets launches ask for up to ``nbytes`` of dynamic shared memory (needed where static + dynamic > 48 KB)."""
        if nbytes > self._shared_allowed:
            _check(_driver().cuFuncSetAttribute(self.func, 8, nbytes), "cuFuncSetAttribute")  # MAX_DYNAMIC_SHARED
            self._shared_allowed = nbytes

    def attribute(self, attr: int) -> int:
        """cuFuncGetAttribute (3: local bytes per thread, 4: registers per thread)."""
        val = ctypes.c_int()
        _check(_driver().cuFuncGetAttribute(ctypes.byref(val), attr, self.func), "cuFuncGetAttribute")
        return val.value


def device_attribute(device: int, attr: int) -> int:
    """cuDeviceGetAttribute of CUDA device ``device`` (e.g. 81: shared memory per SM)."""
    torch.cuda.init()
    dev, val = ctypes.c_int(), ctypes.c_int()
    _check(_driver().cuDeviceGet(ctypes.byref(dev), device), "cuDeviceGet")
    _check(_driver().cuDeviceGetAttribute(ctypes.byref(val), attr, dev), "cuDeviceGetAttribute")
    return val.value


def compile_module(source: str, kernels: dict[str, str], device: int, defines: dict[str, int] | None = None,
                   dependent: Collection[str] = ()) -> dict[str, Kernel]:
    """Compile ``source`` for ``device`` and load it there: {name: Kernel} for ``kernels`` {name: argspec}. The
    kernels named in ``dependent`` wait for the previous kernel themselves and are launched as programmatic
    dependents where the device allows (see the module's docstring)."""
    major, minor = torch.cuda.get_device_capability(device)
    cubin = compile_cubin(source, f"sm_{major}{minor}", defines)
    torch.cuda.init()
    with torch.cuda.device(device):  # cudaSetDevice: the device's primary context is current for the driver
        module = ctypes.c_void_p()
        _check(_driver().cuModuleLoadData(ctypes.byref(module), cubin), "cuModuleLoadData")
        out = {}
        for name, spec in kernels.items():
            func = ctypes.c_void_p()
            _check(_driver().cuModuleGetFunction(ctypes.byref(func), module, name.encode()), "cuModuleGetFunction")
            out[name] = Kernel(func, spec, device, name in dependent and _launches_dependents(device))
    return out

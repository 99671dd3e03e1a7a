"""ar-kernels: load ar (and GPTQ / AWQ) checkpoints into models that run fast. Needs torch alone.

Optional backends (Triton, IPEX, Habana, NVRTC-built CUDA kernels) and transformers are loaded only when used.

>>> import ar_kernels
>>> model = ar_kernels.load("out/W4A16", device="cuda")  # doctest: +SKIP
"""
# ruff: noqa: I001  (grouped by topic, as the public surface reads)
from .__about__ import __version__

# packing layouts (shared with the exporters)
from . import packing

# backends and their registry
from .registry import BACKENDS, BackendSpec, LayerDesc, register_backend, select_backend
from .backends import FloatQuantLinear, IntQuantLinear, QuantLinear
from .backends.torch import TorchIntLinear
from .backends.fp import TorchFloatLinear
from .backends.triton import TritonIntLinear
from .backends.cuda import CudaIntLinear
from .backends.tinygemm import TinygemmIntLinear
from .backends.ipex import IpexIntLinear
from .backends.hpu import HpuIntLinear

# loading
from .load import load, make_quant_linear, post_init_model, replace_linears
from .verify import verify_checkpoint
from .transformers import register_transformers_quantizer

# errors
from .errors import ArError, BackendError, CheckpointError, MissingDependencyError

__all__ = [
    "__version__",
    # packing
    "packing",
    # backends
    "BACKENDS", "BackendSpec", "LayerDesc", "register_backend", "select_backend",
    "QuantLinear", "IntQuantLinear", "FloatQuantLinear",
    "TorchIntLinear", "TorchFloatLinear", "TritonIntLinear", "CudaIntLinear", "TinygemmIntLinear",
    "IpexIntLinear", "HpuIntLinear",
    # loading
    "load", "make_quant_linear", "replace_linears", "post_init_model", "register_transformers_quantizer",
    "verify_checkpoint",
    # errors
    "ArError", "BackendError", "CheckpointError", "MissingDependencyError",
]

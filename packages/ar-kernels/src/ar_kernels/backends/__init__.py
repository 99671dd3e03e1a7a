"""Backends: one module per backend, each registering its QuantLinear classes on import.

The modules import only torch; Triton, IPEX, Habana and NVRTC are loaded when a layer first runs.
"""
from __future__ import annotations

from . import cuda, fp, hpu, ipex, tinygemm, torch, triton  # noqa: F401  (import registers)
from .base import FloatQuantLinear, IntQuantLinear, QuantLinear

__all__ = ["QuantLinear", "IntQuantLinear", "FloatQuantLinear"]

"""Backends: one module per backend, each registering its QuantLinear classes on import.

The modules import only torch; Triton, IPEX and Habana are imported when a layer first runs.
"""
from __future__ import annotations

from . import fp, hpu, ipex, torch, triton  # noqa: F401  (import registers)
from .base import FloatQuantLinear, IntQuantLinear, QuantLinear

__all__ = ["QuantLinear", "IntQuantLinear", "FloatQuantLinear"]

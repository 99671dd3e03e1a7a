"""Checkpoint packing layouts, defined once for exporters and loaders (torch only)."""
from . import awq, bitstream, compressed, fp4, gptq

__all__ = ["awq", "bitstream", "compressed", "fp4", "gptq"]

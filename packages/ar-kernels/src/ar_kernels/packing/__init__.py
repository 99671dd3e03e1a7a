"""Checkpoint packing layouts, defined once for exporters and loaders (torch only)."""
from . import awq, bitstream, compressed, fp4, gptq
from . import gguf  # ggml blocks (the gguf package itself is imported lazily)

__all__ = ["awq", "bitstream", "compressed", "fp4", "gptq", "gguf"]

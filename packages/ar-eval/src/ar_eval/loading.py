"""Load a model directory for evaluation: plain transformers or a quantized checkpoint of ours.

Why two paths: an unquantized or fake-quantized checkpoint is an ordinary transformers
model, while a packed checkpoint (auto_round, gptq, awq, compressed-tensors, ...) needs the
ar-kernels loader to build its quantized linear layers. The ``quantization_config`` in
``config.json`` decides which.
"""
from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path
from typing import Any

import torch

from .errors import EvalError

logger = logging.getLogger("ar")


def parse_devices(device: str | int | None) -> list[str]:
    """``"0,1"`` -> ``["cuda:0", "cuda:1"]``; ``"cpu"``, ``"cuda"``, ``"cuda:1"`` kept; None -> best available.

    Why: the CLI takes ``--device 0,1`` (GPU indices) as the reference does, while torch
    and transformers want device strings.
    """
    if device is None or str(device).strip() in ("", "auto"):
        return ["cuda:0" if torch.cuda.is_available() else "cpu"]
    parts = [p.strip() for p in str(device).split(",") if p.strip()]
    return [f"cuda:{p}" if p.isdigit() else p for p in parts]


def quantization_config(path: str | Path) -> dict[str, Any] | None:
    """The checkpoint's ``quantization_config`` from config.json, or None if it has none."""
    config = Path(path) / "config.json"
    if not config.is_file():
        raise EvalError(f"{str(path)!r} is not a model directory (no config.json); give a directory "
                        "written by save_pretrained or by `ar quantize`")
    qcfg = json.loads(config.read_text(encoding="utf-8")).get("quantization_config")
    return qcfg or None


def default_dtype(device: str) -> torch.dtype | str:
    """float32 on CPU (bf16 matmuls there are slow and the benchmark script scores in fp32),
    the checkpoint's own dtype on accelerators."""
    return torch.float32 if device.startswith("cpu") else "auto"


def load_model(path: str | Path, device: str | None = None, dtype: torch.dtype | str | None = None,
               backend: str = "auto") -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` from a model directory, quantized or not.

    A checkpoint with a ``quantization_config`` goes through ``ar_kernels.load`` (our packed
    formats); anything else, and quantized ones while ar-kernels has no loader, through
    transformers' ``from_pretrained``.

    >>> model, tok = load_model("out/W4A16", device="cuda:0")  # doctest: +SKIP
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = parse_devices(device)[0]
    qcfg = quantization_config(path)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    dtype = default_dtype(dev) if dtype is None else dtype
    if qcfg is not None and not _is_fake(qcfg):
        model = _load_quantized(path, dev, backend, dtype)
        if model is not None:
            return model.eval(), tokenizer
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(dev)
    return model.eval(), tokenizer


def _is_fake(qcfg: dict[str, Any]) -> bool:
    """Fake-quantized checkpoints keep dequantized weights: plain transformers loads them."""
    return str(qcfg.get("packing_format", qcfg.get("format", ""))).lower() in ("fake", "none")


def _load_quantized(path: str | Path, device: str, backend: str, dtype: torch.dtype | str) -> Any | None:
    """``ar_kernels.load`` if it exists; None (fall back to transformers) while it does not.

    The dtype is passed only where the loader takes one, so an older loader still works.
    """
    import ar_kernels

    load = getattr(ar_kernels, "load", None)
    if load is None:
        logger.warning("ar_kernels.load is not available; loading %s with transformers' own loader", path)
        return None
    logger.info("loading quantized checkpoint %s through ar_kernels (backend=%s)", path, backend)
    if "dtype" in inspect.signature(load).parameters:
        return load(str(path), device=device, backend=backend, dtype=dtype)
    return load(str(path), device=device, backend=backend)

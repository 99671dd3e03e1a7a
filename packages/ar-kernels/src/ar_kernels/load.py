"""Swap a model's Linear layers for QuantLinears before its weights load, then finish them after.

``load(path)`` drives transformers' ``from_pretrained`` with our quantizer (``transformers.py``):
the model skeleton is built on the meta device, every quantized Linear is replaced by the
QuantLinear of the best backend with checkpoint-shaped buffers, the checkpoint streams straight
into them (no full-precision copy ever exists), and ``post_init`` converts each to its kernel
layout. GPTQ and AWQ checkpoints go the same way: their config is read as an auto-round one.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError
from .plan import checkpoint_keys, layer_desc, normalize_config
from .registry import LayerDesc, select_backend
from .verify import verify_checkpoint

logger = logging.getLogger("ar")


def make_quant_linear(desc: LayerDesc, bias: bool, device: str | torch.device = "cpu", backend: str = "auto",
                      buffer_device: str | torch.device | None = None) -> nn.Module:
    """The QuantLinear of the best backend for ``desc`` on ``device`` (``backend`` forces one).

    ``buffer_device`` is where its buffers are created (``"meta"`` before a checkpoint loads).
    """
    spec = select_backend(desc, device, backend)
    return spec.linear(desc, bias=bias, device=buffer_device if buffer_device is not None else device)


def replace_linears(model: nn.Module, qconfig: dict[str, Any], keys: dict[str, tuple[str, tuple[int, ...]]],
                    device: str | torch.device = "cpu", backend: str = "auto", dtype: torch.dtype | None = None,
                    buffer_device: str | torch.device | None = "meta") -> dict[str, str]:
    """Replace every Linear the checkpoint stores quantized; returns {layer name: backend name}.

    ``qconfig`` is a quantization_config (auto-round, gptq or awq), ``keys`` the checkpoint's
    tensor names (see ``plan.checkpoint_keys``).
    """
    qc = normalize_config(qconfig)
    dtype = dtype or _model_dtype(model)
    used: dict[str, str] = {}
    for name, mod in list(model.named_modules()):
        if not isinstance(mod, nn.Linear):
            continue
        desc = layer_desc(name, mod, qc, keys, dtype)
        if desc is None:
            continue
        q = make_quant_linear(desc, mod.bias is not None, device, backend, buffer_device)
        _set_module(model, name, q)
        used[name] = q.spec.name
    if not used:
        raise CheckpointError("no quantized Linear found: the checkpoint holds no <layer>.qweight / weight_packed "
                              "tensors matching the model's Linear layers")
    logger.info("ar_kernels: %d quantized layers, backends %s", len(used), dict(Counter(used.values())))
    return used


def post_init_model(model: nn.Module) -> nn.Module:
    """Convert every QuantLinear's loaded buffers into its kernel layout (idempotent)."""
    from .backends.base import QuantLinear
    for mod in model.modules():
        if isinstance(mod, QuantLinear):
            mod.post_init()
    return model


def _model_dtype(model: nn.Module) -> torch.dtype:
    dt = getattr(getattr(model, "config", None), "dtype", None)
    if isinstance(dt, torch.dtype):
        return dt
    if isinstance(dt, str) and dt not in ("auto", ""):
        return getattr(torch, dt)
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def load(path: str | Path, device: str | torch.device = "cpu", backend: str = "auto",
         dtype: torch.dtype | str | None = None, **from_pretrained_kwargs: Any) -> nn.Module:
    """Load an auto_round, GPTQ or AWQ checkpoint as a transformers model that generates.

    device: where the model runs ("cpu", "cuda", "cuda:1", "xpu", "hpu"); backend: "auto"
    (the best installed backend per layer), a family ("torch", "triton") or a key ("triton:int").

    >>> model = load("out/W4A16", device="cuda")  # doctest: +SKIP
    >>> model.generate(**tok("Hello", return_tensors="pt").to("cuda"), max_new_tokens=20)  # doctest: +SKIP
    """
    try:
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError as exc:
        from .errors import missing
        raise missing("transformers", "transformers") from exc
    from .transformers import ar_quantizer_installed
    if Path(path).is_dir():
        verify_checkpoint(path)
    config = AutoConfig.from_pretrained(path)
    qc = _read_quant_config(path, config)
    qc = {**normalize_config(qc), "quant_method": "auto-round", "backend": backend}
    config.quantization_config = qc
    kw: dict[str, Any] = {"dtype": dtype or "auto", "device_map": str(torch.device(device))}
    kw.update(from_pretrained_kwargs)
    with ar_quantizer_installed():
        model, info = AutoModelForCausalLM.from_pretrained(path, config=config, output_loading_info=True, **kw)
    _refuse_incomplete(path, info)
    return model.eval()


def _refuse_incomplete(path: str | Path, info: dict[str, Any]) -> None:
    """transformers fills missing or mis-shaped tensors with fresh values and only logs it; a
    quantized checkpoint with such holes computes garbage, so it is refused with the names."""
    missing = sorted(info.get("missing_keys") or [])
    mismatched = [k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys") or []]
    if missing or mismatched:
        names = ", ".join(repr(k) for k in (missing + mismatched)[:8])
        more = len(missing) + len(mismatched) - 8
        raise CheckpointError(f"{path}: the checkpoint does not match its config: "
                              f"{'missing' if missing else 'wrong shape'} tensor(s) {names}"
                              + (f" and {more} more" if more > 0 else "") + "; re-export the checkpoint")


def _read_quant_config(path: str | Path, config: Any) -> dict[str, Any]:
    qc = getattr(config, "quantization_config", None)
    if qc is None and (Path(path) / "quantization_config.json").exists():
        qc = json.loads((Path(path) / "quantization_config.json").read_text())
    if qc is None:
        raise CheckpointError(f"{path}: config.json has no quantization_config; is this a quantized checkpoint?")
    return qc if isinstance(qc, dict) else qc.to_dict()


__all__ = ["load", "make_quant_linear", "replace_linears", "post_init_model", "checkpoint_keys", "verify_checkpoint"]

"""auto_gptq: GPTQ v1 checkpoints (``quant_method: "gptq"``) for GPTQModel, vLLM, SGLang, TGI.

Per quantized Linear: ``qweight`` int32 (in * bits / 32, out), ``qzeros`` int32
(ngroups, out * bits / 32) holding zero - 1, ``scales`` fp16 (ngroups, out) and a trivial
``g_idx`` (no act-order). Layers whose scheme differs from the default are described by
GPTQModel ``dynamic`` entries: ``"+:^name$": {overrides}``, and ``"-:^name$": {}`` for layers
of a block that stayed 16-bit.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ar_kernels.packing import gptq as gptq_pack
from ar_schemes import QuantizedLayer, QuantizedModel, QuantScheme

from ..base import Exporter, register_format
from ..errors import ExportError
from .fused import fused_group_problems
from .safetensors_io import (
    block_prefixes,
    compress_to_regex,
    fp16_scales,
    in_blocks,
    is_linear,
    model_dtype,
    refuse_unwritable,
    write_checkpoint,
)

GPTQ_BITS = (2, 3, 4, 8)


def int_weight_only_problem(scheme: QuantScheme, fmt: str, alternative: str) -> str | None:
    """Shared refusal for formats that carry integer weight-only schemes (16-bit layers always fit)."""
    if not scheme.is_quantized:
        return None
    if scheme.data_type != "int":
        return (f"{fmt} stores integer weights, not data_type {scheme.data_type!r}; "
                f"use {alternative}")
    if scheme.quantizes_activations:
        return (f"{fmt} is weight-only but the scheme quantizes activations to {scheme.act_bits} bits; "
                "use act_bits=16 (e.g. W8A16) or export 'fake'")
    if isinstance(scheme.group_size, tuple) or scheme.group_size == 0:
        return (f"{fmt} supports per-group (group_size > 0) or per-channel (-1) scales, "
                f"not group_size={scheme.group_size!r}")
    return None


def gptq_layer_tensors(layer: QuantizedLayer, offset: int, dtype: torch.dtype = torch.float16
                       ) -> dict[str, Tensor]:
    """qweight / qzeros (zero - offset) / fp16 scales of one int layer, plus its bias in ``dtype``."""
    bits = layer.scheme.bits
    if layer.zero is None:
        raise ExportError(f"layer {layer.name} has no zero points; integer layers need them")
    try:
        qzeros = gptq_pack.pack_qzeros(layer.zero, bits, offset=offset)
    except ValueError as e:
        raise ExportError(f"layer {layer.name}: {e}; export 'auto_round' (raw zero points) instead") from e
    out = {"qweight": gptq_pack.pack_qweight(layer.codes, bits), "qzeros": qzeros, "scales": fp16_scales(layer)}
    if layer.bias is not None:
        out["bias"] = layer.bias.to(dtype)
    return out


def dynamic_overrides(qmodel: QuantizedModel, keys: tuple[str, ...], skipped_in_blocks: list[str]
                      ) -> dict[str, dict[str, Any]]:
    """GPTQModel ``dynamic``: regex entries for layers unlike the default scheme (``-:`` skips them)."""
    default = qmodel.default_scheme
    plus: dict[str, dict[str, Any]] = {}
    for name, layer in qmodel.layers.items():
        diff = {k: getattr(layer.scheme, k) for k in keys if getattr(layer.scheme, k) != getattr(default, k)}
        if diff:
            plus[name] = diff
    minus = {name: {} for name in skipped_in_blocks}
    prefixes, linears = block_prefixes(qmodel), [*qmodel.layers, *skipped_in_blocks]
    dyn: dict[str, dict[str, Any]] = {}
    for sign, entries in (("+", plus), ("-", minus)):
        for key, value in compress_to_regex(entries, prefixes, linears).items():
            dyn[f"{sign}:{key if key.startswith('^') else '^' + re.escape(key) + '$'}"] = value
    return dyn


def skipped_in_blocks(qmodel: QuantizedModel, model: Any) -> list[str]:
    """Linear layers inside the quantized blocks that stayed 16-bit (a loader must not swap them)."""
    prefixes = block_prefixes(qmodel)
    return [n for n, m in model.named_modules()
            if is_linear(m) and n not in qmodel.layers and in_blocks(n, prefixes)]


@register_format("auto_gptq")
class GPTQExporter(Exporter):
    """GPTQ v1: int weights of 2, 3, 4 or 8 bits, sym or asym, per group or per channel."""

    def check(self, layer: str, scheme: QuantScheme) -> str | None:
        problem = int_weight_only_problem(scheme, "auto_gptq", "auto_round or llm_compressor")
        if problem or not scheme.is_quantized:
            return problem
        if scheme.bits not in GPTQ_BITS:
            return (f"auto_gptq kernels support bits {GPTQ_BITS}, not {scheme.bits}; "
                    "use auto_round (bits 2-8) or pick one of those widths")
        return None

    def check_model(self, layer_schemes: dict[str, QuantScheme | None]) -> list[str]:
        return super().check_model(layer_schemes) + fused_group_problems(layer_schemes, "auto_gptq")

    def write(self, qmodel: QuantizedModel, model: Any, tokenizer: Any, out_dir: Path, **options: Any) -> None:
        refuse_unwritable(self, qmodel)
        d = qmodel.default_scheme
        qconfig: dict[str, Any] = {
            "quant_method": "gptq", "checkpoint_format": "gptq", "bits": d.bits, "group_size": d.group_size,
            "sym": d.sym, "desc_act": False, "static_groups": False, "true_sequential": True,
            "lm_head": any(not in_blocks(n, block_prefixes(qmodel)) for n in qmodel.layers),
            "damp_percent": 0.01, "quantizer": [f"ar-export:{_version()}"],
        }
        dyn = dynamic_overrides(qmodel, ("bits", "group_size", "sym"), skipped_in_blocks(qmodel, model))
        if dyn:
            qconfig["dynamic"] = dyn

        dtype = model_dtype(model)

        def pack(layer: QuantizedLayer) -> dict[str, Tensor]:
            out = gptq_layer_tensors(layer, offset=1, dtype=dtype)
            out["g_idx"] = gptq_pack.g_idx(layer.shape[1], int(layer.scheme.group_size))  # type: ignore[arg-type]
            return out

        write_checkpoint(qmodel, model, tokenizer, out_dir, pack, qconfig, options.get("max_shard_size", "5GB"))


def _version() -> str:
    from ..__about__ import __version__
    return __version__

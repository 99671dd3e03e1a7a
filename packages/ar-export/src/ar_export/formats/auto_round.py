"""auto_round: the reference's own format (``quant_method: "auto-round"``), loadable by auto-round,
transformers' AutoRoundConfig, vLLM and SGLang.

One ``packing_format`` per checkpoint, chosen from the layers' schemes as the reference does:

- every int layer symmetric -> ``auto_round:auto_gptq`` (GPTQ v1: qweight, qzeros = zero - 1, scales);
- every int layer 4-bit asymmetric per group -> ``auto_round:auto_awq`` (AWQ gemm layout);
- other int mixes -> ``auto_round`` (GPTQ layout with raw zero points, bits 2-8, sym or asym);
- MXFP4 / MXFP8 -> ``auto_round:llm_compressor`` (``weight_packed`` E2M1 nibbles or e4m3 ``weight``,
  ``weight_scale`` E8M0 exponents).

NVFP4 and FP8 are refused: auto-round reads them only with calibrated activation scales
(``input_global_scale`` / ``input_scale``) that ar does not record; llm_compressor carries them.

Layers unlike the default scheme go to ``extra_config`` (the full scheme for layers outside the
blocks, e.g. a quantized lm_head; ``bits: 16`` for in-block Linears kept 16-bit); an override that
the same layer of every block shares is folded into one regex key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ar_kernels.packing import fp4
from ar_schemes import QuantizedLayer, QuantizedModel, QuantScheme

from ..base import Exporter, register_format
from ..errors import ExportError
from .awq import awq_layer_tensors
from .fused import fused_group_problems
from .gptq import gptq_layer_tensors, skipped_in_blocks
from .safetensors_io import (
    block_prefixes,
    compress_to_regex,
    in_blocks,
    is_linear,
    model_dtype,
    refuse_unwritable,
    write_checkpoint,
)

SCHEME_KEYS = ("bits", "group_size", "sym", "data_type", "act_bits", "act_group_size", "act_sym",
               "act_data_type", "act_dynamic", "super_bits", "super_group_size")
_FAMILIES = {"int": "int", "mx_fp": "fp", "mx_fp_rceil": "fp", "nv_fp": "fp", "fp": "fp8"}


def packing_format(schemes: list[QuantScheme]) -> str:
    """The one packing format that carries every scheme of a model (see the module docstring)."""
    types = {s.data_type for s in schemes}
    if types <= {"mx_fp", "mx_fp_rceil", "nv_fp"}:
        return "auto_round:llm_compressor"
    if types != {"int"}:
        raise ExportError(f"one auto_round checkpoint has one packing format; data types {sorted(types)} "
                          "cannot be mixed; keep one family (int or MX) per model")
    if all(s.sym for s in schemes):
        return "auto_round:auto_gptq"
    if all(not s.sym and s.bits == 4 and isinstance(s.group_size, int) and s.group_size > 0 for s in schemes):
        return "auto_round:auto_awq"
    return "auto_round"


def _scheme_value(scheme: QuantScheme, key: str) -> Any:
    v = getattr(scheme, key)
    return list(v) if isinstance(v, tuple) else v


def layer_overrides(qmodel: QuantizedModel, model: Any) -> dict[str, dict[str, Any]]:
    """``extra_config``: full schemes outside the blocks, differing keys inside, 16-bit skips."""
    d = qmodel.default_scheme
    prefixes = block_prefixes(qmodel)
    extra: dict[str, dict[str, Any]] = {}
    for name, layer in qmodel.layers.items():
        s = layer.scheme
        if not in_blocks(name, prefixes):
            extra[name] = {k: _scheme_value(s, k) for k in SCHEME_KEYS}
        elif diff := {k: _scheme_value(s, k) for k in SCHEME_KEYS if getattr(s, k) != getattr(d, k)}:
            extra[name] = diff
    for name in skipped_in_blocks(qmodel, model):
        extra[name] = {"bits": 16, "data_type": "float", "act_bits": 16}
    linears = [n for n, m in model.named_modules() if is_linear(m)]
    return compress_to_regex(extra, prefixes, linears)


def fp_layer_tensors(layer: QuantizedLayer, dtype: torch.dtype) -> dict[str, Tensor]:
    """MXFP4 / MXFP8 (and NVFP4) tensors of one layer, named as auto-round's fp QuantLinears name them."""
    s = layer.scheme
    out: dict[str, Tensor] = {}
    if s.bits == 8:  # MXFP8: e4m3 elements, E8M0 exponents
        out["weight"] = layer.codes.to(torch.float8_e4m3fn)
        out["weight_scale"] = layer.extra["scale_e8m0"]
    else:
        out["weight_packed"] = fp4.pack_fp4(layer.codes)
        out["weight_scale"] = layer.extra["scale_e8m0" if s.data_type != "nv_fp" else "scale_e4m3"]
        if s.data_type == "nv_fp":
            out["weight_global_scale"] = layer.global_scale.float().reshape(1)  # type: ignore[union-attr]
    for key in ("input_global_scale", "input_scale"):
        if key in layer.extra:
            out[key] = layer.extra[key].float().reshape(1)
    if layer.bias is not None:
        out["bias"] = layer.bias.to(dtype)
    return out


@register_format("auto_round")
class AutoRoundExporter(Exporter):
    """int 2-8 bit (sym or asym) and MXFP4 / MXFP8, with per-layer and regex overrides."""

    def check(self, layer: str, scheme: QuantScheme) -> str | None:
        dt = scheme.data_type
        if not scheme.is_quantized:
            return None
        if dt not in _FAMILIES or scheme.gguf:
            return f"auto_round cannot store data_type {dt!r} ({scheme.gguf or dt}); use the gguf format"
        if dt == "int" and scheme.quantizes_activations:
            return (f"auto_round int kernels are weight-only; {scheme.act_bits}-bit activations need another "
                    "runtime; use W8A16 / W4A16 or export 'fake'")
        if dt == "int" and (isinstance(scheme.group_size, tuple) or scheme.group_size == 0):
            return f"auto_round int layers need group_size > 0 or -1, not {scheme.group_size!r}"
        if dt == "nv_fp":
            return ("auto_round NVFP4 needs calibrated activation global scales that ar does not record, and "
                    "auto-round has no weight-only NVFP4 kernel; export NVFP4 with act_bits=16 as llm_compressor "
                    "(NVFP4A16), or use MXFP4 in auto_round")
        if dt == "fp":
            return ("auto_round FP8 is auto-round's fp8_static layout, which needs a calibrated input_scale that "
                    "ar does not record; export FP8 (FPW8A16, FP8_BLOCK) as llm_compressor (float-quantized)")
        if dt in ("mx_fp", "mx_fp_rceil") and scheme.group_size != 32:
            return f"auto_round {dt} needs group_size=32 (the MX block), not {scheme.group_size!r}"
        return None

    def check_model(self, layer_schemes: dict[str, QuantScheme | None]) -> list[str]:
        problems = super().check_model(layer_schemes) + fused_group_problems(layer_schemes, "auto_round")
        families = {_FAMILIES.get(s.data_type) for s in layer_schemes.values() if s is not None}
        if len(families) > 1:
            problems.append(f"an auto_round checkpoint has one packing format, but the layers mix "
                            f"{sorted(str(f) for f in families)} schemes; keep one family per model or export 'fake'")
        return problems

    def write(self, qmodel: QuantizedModel, model: Any, tokenizer: Any, out_dir: Path, **options: Any) -> None:
        refuse_unwritable(self, qmodel)
        pf = options.get("packing_format") or packing_format([layer.scheme for layer in qmodel.layers.values()])
        dtype = model_dtype(model)
        write_checkpoint(qmodel, model, tokenizer, out_dir, lambda layer: _pack(layer, pf, dtype),
                         auto_round_config(qmodel, model, pf), options.get("max_shard_size", "5GB"))


def _pack(layer: QuantizedLayer, pf: str, dtype: torch.dtype) -> dict[str, Tensor]:
    if layer.scheme.data_type != "int":
        return fp_layer_tensors(layer, dtype)
    if pf == "auto_round:auto_awq":
        return awq_layer_tensors(layer, dtype)
    return gptq_layer_tensors(layer, offset=1 if pf == "auto_round:auto_gptq" else 0, dtype=dtype)


def auto_round_config(qmodel: QuantizedModel, model: Any, pf: str) -> dict[str, Any]:
    """``quantization_config`` of an auto_round checkpoint (also written to quantization_config.json)."""
    from ..__about__ import __version__
    d = qmodel.default_scheme
    cfg: dict[str, Any] = {k: _scheme_value(d, k) for k in SCHEME_KEYS if getattr(d, k) is not None}
    cfg.update(quant_method="auto-round", packing_format=pf, autoround_version="0.16.1",
               block_name_to_quantize=block_prefixes(qmodel), quantizer=f"ar-export {__version__}")
    extra = layer_overrides(qmodel, model)
    if extra:
        cfg["extra_config"] = extra
    for key, value in qmodel.options.items():  # non-default tuning options, as the reference records them
        if isinstance(value, (int, float, str, bool)) and key not in cfg:
            cfg[key] = value
    return cfg

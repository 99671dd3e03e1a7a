"""llm_compressor: compressed-tensors checkpoints (``quant_method: "compressed-tensors"``) for vLLM.

One config group per distinct scheme, targeting its layers by exact name, each with its format:

- int weights -> ``pack-quantized``: ``weight_packed`` int32 (out, in * bits / 32), signed values
  shifted by 2^(b-1) (= ar's unsigned codes), ``weight_scale``, ``weight_shape`` and for asym a
  ``weight_zero_point`` packed along out (signed, shifted the same way);
- MXFP4 -> ``mxfp4-pack-quantized``: E2M1 nibbles + E8M0 exponent scales (uint8);
- NVFP4 -> ``nvfp4-pack-quantized``: E2M1 nibbles + E4M3 group scales + ``weight_global_scale``;
- FP8 (and MXFP8) -> ``float-quantized``: e4m3 ``weight`` + ``weight_scale``.

Scales are written in the model dtype when every value survives that dtype exactly, else fp32,
so decompression reproduces the tuned weights bit for bit.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ar_kernels.packing import compressed, fp4
from ar_schemes import QuantizedLayer, QuantizedModel, QuantScheme

from ..base import Exporter, register_format
from ..errors import ExportError
from .fused import fused_group_problems
from .safetensors_io import is_linear, model_dtype, refuse_unwritable, write_checkpoint


def _strategy(scheme: QuantScheme) -> dict[str, Any]:
    g = scheme.group_size
    if isinstance(g, tuple):
        return {"strategy": "block", "block_structure": list(g), "group_size": None}
    if g == 0:
        return {"strategy": "tensor", "group_size": None}
    if g == -1:
        return {"strategy": "channel", "group_size": None}
    strategy = "tensor_group" if scheme.data_type == "nv_fp" else "group"
    return {"strategy": strategy, "group_size": g}


def _weights_args(scheme: QuantScheme) -> dict[str, Any]:
    is_int = scheme.data_type == "int"
    args: dict[str, Any] = {"num_bits": scheme.bits, "type": "int" if is_int else "float",
                            "symmetric": scheme.sym or not is_int, "dynamic": False, "observer": "minmax",
                            "actorder": None, **_strategy(scheme)}
    if scheme.data_type.startswith("mx_fp"):
        args.update(scale_dtype="torch.uint8", zp_dtype="torch.uint8")
    elif scheme.data_type == "nv_fp":
        args.update(scale_dtype="torch.float8_e4m3fn", zp_dtype="torch.float8_e4m3fn")
    return args


def _input_args(scheme: QuantScheme) -> dict[str, Any] | None:
    """Activation args for the dynamic activation schemes ar can serve without calibration."""
    if not scheme.quantizes_activations:
        return None
    if scheme.data_type.startswith("mx_fp"):
        return {"num_bits": scheme.act_bits, "type": "float", "symmetric": True, "dynamic": True,
                "strategy": "group", "group_size": 32, "scale_dtype": "torch.uint8", "zp_dtype": "torch.uint8"}
    if scheme.data_type == "fp":  # FP8 with dynamic per-token activations (FP8_DYNAMIC / FP8_BLOCK)
        grouped = isinstance(scheme.group_size, tuple)
        return {"num_bits": 8, "type": "float", "symmetric": True, "dynamic": True,
                "strategy": "group" if grouped else "token", "group_size": scheme.act_group_size if grouped else None}
    raise ExportError(f"llm_compressor cannot describe {scheme.act_data_type} activations of {scheme}")


def ct_format(scheme: QuantScheme) -> str:
    if scheme.data_type == "int":
        return "pack-quantized"
    if scheme.data_type == "nv_fp":
        return "nvfp4-pack-quantized"
    if scheme.data_type.startswith("mx_fp") and scheme.bits == 4:
        return "mxfp4-pack-quantized"
    return "float-quantized"


def _scale_tensor(scale: Tensor, dtype: torch.dtype) -> Tensor:
    """The scale in ``dtype`` when that keeps every value, else fp32 (decompression stays exact)."""
    s = scale.float()
    return s.to(dtype) if torch.equal(s.to(dtype).float(), s) else s


def ct_layer_tensors(layer: QuantizedLayer, dtype: torch.dtype) -> dict[str, Tensor]:
    """The tensors of one layer in its compressed-tensors format (bias in the model dtype)."""
    s = layer.scheme
    out: dict[str, Tensor] = {}
    if s.data_type == "int":
        out["weight_packed"] = compressed.pack_int(layer.codes, s.bits)
        out["weight_scale"] = _scale_tensor(layer.scale, dtype)
        out["weight_shape"] = torch.tensor(layer.shape, dtype=torch.int64)
        if not s.sym:
            assert layer.zero is not None
            out["weight_zero_point"] = compressed.pack_int(layer.zero, s.bits, dim=0)
    elif s.data_type == "nv_fp":
        out["weight_packed"] = fp4.pack_fp4(layer.codes)
        out["weight_scale"] = layer.extra["scale_e4m3"]
        out["weight_global_scale"] = layer.global_scale.float().reshape(1)  # type: ignore[union-attr]
    elif s.data_type.startswith("mx_fp") and s.bits == 4:
        out["weight_packed"] = fp4.pack_fp4(layer.codes)
        out["weight_scale"] = layer.extra["scale_e8m0"]
    else:  # fp8 elements: MXFP8 is a per-group fp8 with power-of-two scales
        out["weight"] = layer.codes.to(torch.float8_e4m3fn)
        out["weight_scale"] = _scale_tensor(layer.scale, dtype)
    if layer.bias is not None:
        out["bias"] = layer.bias.to(dtype)
    return out


@register_format("llm_compressor")
class CompressedTensorsExporter(Exporter):
    """compressed-tensors: int 2-8 bit (pack-quantized), MXFP4, NVFP4, FP8 (float-quantized)."""

    def check(self, layer: str, scheme: QuantScheme) -> str | None:
        dt = scheme.data_type
        if not scheme.is_quantized:
            return None
        if dt in ("int_dq",) or scheme.gguf:
            return f"llm_compressor has no GGUF k-quant layout for {scheme.gguf or dt!r}; use the gguf format"
        if dt == "int" and scheme.quantizes_activations:
            return (f"llm_compressor int weights with {scheme.act_bits}-bit activations (W8A8 int-quantized) "
                    "are not written by ar yet; use W8A16 or export 'fake'")
        if dt == "nv_fp" and scheme.quantizes_activations:
            return ("llm_compressor NVFP4 activations need calibrated input global scales that ar does not "
                    "record; use NVFP4 with act_bits=16 (weight-only NVFP4A16) or auto_round")
        if dt == "fp" and scheme.quantizes_activations and not scheme.act_dynamic:
            return ("llm_compressor FP8 static activations need a calibrated input_scale that ar does not "
                    "record; use FP8_BLOCK / dynamic activations or FPW8A16")
        if isinstance(scheme.group_size, tuple) and dt != "fp":
            return f"llm_compressor supports 2-D blocks only for FP8, not data_type {dt!r}"
        return None

    def check_model(self, layer_schemes: dict[str, QuantScheme | None]) -> list[str]:
        return super().check_model(layer_schemes) + fused_group_problems(layer_schemes, "llm_compressor")

    def write(self, qmodel: QuantizedModel, model: Any, tokenizer: Any, out_dir: Path, **options: Any) -> None:
        refuse_unwritable(self, qmodel)
        dtype = model_dtype(model)
        write_checkpoint(qmodel, model, tokenizer, out_dir, lambda layer: ct_layer_tensors(layer, dtype),
                         ct_config(qmodel, model), options.get("max_shard_size", "5GB"))


def ct_config(qmodel: QuantizedModel, model: Any) -> dict[str, Any]:
    """``quantization_config``: one group per distinct scheme; 16-bit Linears listed in ``ignore``."""
    by_scheme: dict[QuantScheme, list[str]] = {}
    for name, layer in qmodel.layers.items():
        by_scheme.setdefault(layer.scheme, []).append(name)
    groups = {}
    for i, (scheme, names) in enumerate(by_scheme.items()):
        groups[f"group_{i}"] = {"targets": names, "weights": _weights_args(scheme),
                                "input_activations": _input_args(scheme), "output_activations": None,
                                "format": ct_format(scheme)}
    formats = {g["format"] for g in groups.values()}
    ignore = [n for n, m in model.named_modules() if is_linear(m) and n not in qmodel.layers]
    return {"quant_method": "compressed-tensors", "format": formats.pop() if len(formats) == 1 else "mixed-precision",
            "quantization_status": "compressed", "config_groups": groups, "ignore": ignore,
            "kv_cache_scheme": None, "global_compression_ratio": None}

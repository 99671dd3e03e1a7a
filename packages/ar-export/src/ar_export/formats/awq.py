"""auto_awq: AutoAWQ "gemm" checkpoints (``quant_method: "awq"``), 4-bit, for vLLM, SGLang, TGI.

Per quantized Linear: ``qweight`` int32 (in, out / 8) and ``qzeros`` int32 (ngroups, out / 8)
packed along out in AWQ's interleaved order, ``scales`` fp16 (ngroups, out); zero points are
raw. AWQ kernels compute ``(q - zero) * scale``, so symmetric schemes fit too (zero = 8).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ar_kernels.packing import awq as awq_pack
from ar_schemes import QuantizedLayer, QuantizedModel, QuantScheme

from ..base import Exporter, register_format
from ..errors import ExportError
from .fused import fused_group_problems
from .gptq import int_weight_only_problem
from .safetensors_io import (
    block_prefixes,
    fp16_scales,
    in_blocks,
    is_linear,
    model_dtype,
    refuse_unwritable,
    write_checkpoint,
)


def awq_layer_tensors(layer: QuantizedLayer, dtype: torch.dtype = torch.float16) -> dict[str, Tensor]:
    """qweight / qzeros / fp16 scales of one 4-bit layer in the AWQ gemm layout, plus its bias."""
    out_f, _ = layer.shape
    if out_f % 8 or layer.zero is None:
        raise ExportError(f"layer {layer.name}: AWQ needs out_features divisible by 8 and zero points "
                          f"(out_features={out_f}); keep it 16-bit or export auto_round")
    out = {"qweight": awq_pack.pack(layer.codes.t()),  # codes (out, in) -> (in, out) packed along out
           "qzeros": awq_pack.pack(layer.zero.t()),
           "scales": fp16_scales(layer)}
    if layer.bias is not None:
        out["bias"] = layer.bias.to(dtype)
    return out


@register_format("auto_awq")
class AWQExporter(Exporter):
    """AWQ gemm: 4-bit int weights with per-group scales (group_size > 0)."""

    def check(self, layer: str, scheme: QuantScheme) -> str | None:
        problem = int_weight_only_problem(scheme, "auto_awq", "auto_round or llm_compressor")
        if problem or not scheme.is_quantized:
            return problem
        if scheme.bits != 4:
            return (f"auto_awq stores 4-bit weights only, not {scheme.bits}-bit; use auto_round or "
                    f"auto_gptq for W{scheme.bits}A16, or a 4-bit scheme such as W4A16")
        if layer.endswith("lm_head"):
            return "auto_awq loaders keep lm_head 16-bit; leave it unquantized or use auto_round"
        if scheme.group_size == -1:
            return "auto_awq needs per-group scales (e.g. group_size=128), not per-channel (-1); use auto_gptq"
        return None

    def check_model(self, layer_schemes: dict[str, QuantScheme | None]) -> list[str]:
        problems = super().check_model(layer_schemes) + fused_group_problems(layer_schemes, "auto_awq")
        groups = {s.group_size for s in layer_schemes.values() if s is not None}
        if len(groups) > 1:
            problems.append(f"auto_awq has one group size per model, got {sorted(groups)}; use auto_round")
        return problems

    def write(self, qmodel: QuantizedModel, model: Any, tokenizer: Any, out_dir: Path, **options: Any) -> None:
        refuse_unwritable(self, qmodel)
        d = qmodel.default_scheme
        prefixes = block_prefixes(qmodel)
        not_converted = [n for n, m in model.named_modules()
                         if is_linear(m) and n not in qmodel.layers and in_blocks(n, prefixes)]
        qconfig: dict[str, Any] = {
            "quant_method": "awq", "version": "gemm", "bits": 4, "group_size": d.group_size,
            "zero_point": True, "modules_to_not_convert": not_converted or None,
        }
        dtype = model_dtype(model)
        write_checkpoint(qmodel, model, tokenizer, out_dir, lambda layer: awq_layer_tensors(layer, dtype), qconfig,
                         options.get("max_shard_size", "5GB"))

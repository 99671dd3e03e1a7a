"""What every packed-safetensors exporter shares: the model's own tensors, sharding and config.json.

A packed checkpoint is the model's state dict with each quantized Linear's ``weight`` replaced by
that format's tensors (``qweight``/``qzeros``/``scales``, ``weight_packed``/``weight_scale``, ...).
Everything else (embeddings, norms, biases, an unquantized lm_head) is written from the model in
its own dtype, so a loader sees exactly the model ar tuned.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from ar_schemes import QuantizedLayer, QuantizedModel

from ..base import Exporter
from ..errors import ExportError
from .common import save_hf_extras, write_quantization_config

LayerPacker = Callable[[QuantizedLayer], dict[str, Tensor]]
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def is_linear(module: torch.nn.Module) -> bool:
    """A layer the exporters may quantize: ``nn.Linear`` or GPT-2's transposed ``Conv1D``."""
    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"


def model_dtype(model: Any) -> torch.dtype:
    return next(model.parameters()).dtype


def base_tensors(model: Any, quantized: set[str]) -> dict[str, Tensor]:
    """The model's tensors minus the weights of quantized layers; tied copies written once.

    Tied weights (lm_head tied to the embedding) share storage; safetensors refuses shared
    storage and transformers re-ties on load, so only the first name is kept.
    """
    out: dict[str, Tensor] = {}
    seen: set[int] = set()
    drop = {f"{n}.weight" for n in quantized}
    for name, t in model.state_dict().items():
        if name in drop:
            continue
        ptr = t.data_ptr()
        if ptr in seen and t.numel():
            continue
        seen.add(ptr)
        out[name] = t.detach().cpu().contiguous()
    return out


def packed_tensors(qmodel: QuantizedModel, model: Any, pack: LayerPacker) -> dict[str, Tensor]:
    """Base tensors plus ``pack(layer)`` under each quantized layer's name."""
    modules = dict(model.named_modules())
    missing = sorted(n for n in qmodel.layers if n not in modules)
    if missing:
        raise ExportError(f"quantized layers {missing[:5]} are not modules of the model; "
                          "pass the model that was quantized")
    tensors = base_tensors(model, set(qmodel.layers))
    for name, layer in qmodel.layers.items():
        for suffix, t in pack(layer).items():
            tensors[f"{name}.{suffix}"] = t.contiguous()
    return tensors


def parse_size(size: int | str) -> int:
    """``"5GB"``, ``"500MB"``, ``"2GiB"`` or a byte count -> bytes."""
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?I?B)\s*", str(size).upper())
    if not m:
        raise ExportError(f"max_shard_size={size!r} is not a size; use bytes or e.g. '5GB', '500MB', '2GiB'")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def write_sharded(tensors: dict[str, Tensor], out_dir: Path, max_shard_size: int | str = "5GB") -> None:
    """``model.safetensors``, or ``model-0000i-of-0000n.safetensors`` plus the index when larger."""
    limit = parse_size(max_shard_size)
    shards: list[dict[str, Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], str(out_dir / "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map: dict[str, str] = {}
    for i, shard in enumerate(shards, 1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out_dir / fname), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, fname))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True))


def write_checkpoint(qmodel: QuantizedModel, model: Any, tokenizer: Any, out_dir: Path, pack: LayerPacker,
                     qconfig: dict[str, Any], max_shard_size: int | str = "5GB",
                     config_key: str = "quantization_config") -> None:
    """The whole packed checkpoint: tensors, config.json with ``qconfig``, tokenizer, generation config."""
    write_sharded(packed_tensors(qmodel, model, pack), out_dir, max_shard_size)
    model.config.save_pretrained(out_dir)
    write_quantization_config(out_dir, qconfig)
    if config_key != "quantization_config":  # e.g. AutoAWQ also reads quant_config.json
        (out_dir / config_key).write_text(json.dumps(qconfig, indent=2, sort_keys=True))
    save_hf_extras(model, tokenizer, out_dir)


def block_prefixes(qmodel: QuantizedModel) -> list[str]:
    """Block lists as auto-round names them: ``["model.layers"]`` from blocks or layer names."""
    names = qmodel.block_names or list(qmodel.layers)
    out: list[str] = []
    for n in names:
        m = re.match(r"^(.*?)\.\d+(\.|$)", n)
        prefix = m.group(1) if m else n
        if prefix not in out:
            out.append(prefix)
    return out


def in_blocks(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def fp16_scales(layer: QuantizedLayer) -> Tensor:
    """Per-group scales (out, ngroups) -> fp16 (ngroups, out) as GPTQ/AWQ store them."""
    return layer.scale.to(torch.float16).t().contiguous()


def refuse_unwritable(exporter: Exporter, qmodel: QuantizedModel) -> None:
    """Re-check at write time: the scheme assignment may not have gone through ``check_formats``."""
    schemes: dict[str, Any] = {n: layer.scheme for n, layer in qmodel.layers.items()}
    schemes.update({n: None for n in qmodel.skipped if n not in schemes})
    problems = exporter.check_model(schemes)
    if problems:
        raise ExportError(f"cannot write {exporter.name}: " + "; ".join(problems[:5]))


def compress_to_regex(extra: dict[str, dict[str, Any]], prefixes: list[str], linears: list[str]
                      ) -> dict[str, dict[str, Any]]:
    """Fold an override that every block's same layer shares into one regex key.

    ``{"model.layers.0.mlp.down_proj": {"bits": 8}, "model.layers.1.mlp.down_proj": {"bits": 8}}``
    becomes ``{"^model\\.layers\\.\\d+\\.mlp\\.down_proj$": {"bits": 8}}``; loaders search keys
    that are not layer names as regexes. Anything not shared by every block stays exact.
    """
    by_leaf: dict[tuple[str, str], list[str]] = {}  # (block prefix, path inside the block) -> layer names
    for name in linears:
        for p in prefixes:
            m = re.fullmatch(rf"{re.escape(p)}\.\d+\.(.+)", name)
            if m:
                by_leaf.setdefault((p, m.group(1)), []).append(name)
    out = dict(extra)
    for (prefix, leaf), names in by_leaf.items():
        values = [extra.get(n) for n in names]
        if len(names) < 2 or values[0] is None or any(v != values[0] for v in values):
            continue
        for n in names:
            del out[n]
        out[rf"^{re.escape(prefix)}\.\d+\.{re.escape(leaf)}$"] = values[0]
    return out

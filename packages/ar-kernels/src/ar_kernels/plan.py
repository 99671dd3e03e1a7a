"""From a checkpoint's ``quantization_config`` and tensor names to one LayerDesc per quantized Linear.

Reads the three configs we load: ``auto-round`` (ours and the reference's: defaults, per-layer
``extra_config`` by name or regex, ``block_name_to_quantize``), ``gptq`` (GPTQModel ``dynamic``
``+:regex`` / ``-:regex`` overrides) and ``awq`` (``modules_to_not_convert``). Which Linear layers
are quantized is decided by the tensors present (``<layer>.qweight``, ``.weight_packed``, FP8
``.weight`` with ``.weight_scale``), so a layer the exporter kept in 16 bits is never swapped.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError
from .registry import LayerDesc

# packing_format strings of the reference and of GPTQ / AWQ configs -> our packing names
_PACKING = {"auto_round:auto_gptq": "gptq", "auto_round:gptq": "gptq", "auto_gptq": "gptq", "gptq": "gptq",
            "auto_round:auto_awq": "awq", "auto_round:awq": "awq", "auto_awq": "awq", "awq": "awq",
            "auto_round": "auto_round",
            "auto_round:llm_compressor": "float", "auto_round:fp8": "float", "auto_round:fp8_static": "float"}
_SCHEME_KEYS = ("bits", "group_size", "sym", "data_type", "act_bits")


def checkpoint_keys(files: Iterable[str | Path]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name -> (safetensors dtype, shape), read from the file headers only (no data)."""
    keys: dict[str, tuple[str, tuple[int, ...]]] = {}
    for f in files:
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        keys.update({k: (v["dtype"], tuple(v["shape"])) for k, v in header.items() if k != "__metadata__"})
    return keys


def normalize_config(qc: dict[str, Any]) -> dict[str, Any]:
    """A gptq / awq / auto-round quantization_config as an auto-round one with our packing names."""
    qc = dict(qc)
    method = qc.get("quant_method", "")
    method = str(getattr(method, "value", method)).lower().replace("_", "-")  # transformers may pass an Enum
    if method == "gptq":
        if qc.get("checkpoint_format", "gptq") not in ("gptq", "gptq_v1") or qc.get("meta", {}).get(
                "checkpoint_format") == "gptq_v2":
            raise CheckpointError("GPTQ v2 checkpoints (raw zero points) are not supported; re-export as gptq v1")
        qc["packing"] = "gptq"
        qc["extra_config"] = _dynamic_to_extra(qc.get("dynamic") or {})
    elif method == "awq":
        if str(qc.get("version", "gemm")).lower() != "gemm":
            raise CheckpointError(f"AWQ version {qc.get('version')!r} is not supported; valid: 'gemm'")
        qc.update(bits=qc.get("bits", qc.get("w_bit", 4)), group_size=qc.get("group_size", qc.get("q_group_size", 128)),
                  sym=not qc.get("zero_point", True), packing="awq")
        qc["extra_config"] = {re.escape(m): {"bits": 16} for m in qc.get("modules_to_not_convert") or ()}
    elif method == "auto-round" and qc.get("packing") in _PACKING.values():
        pass  # already normalized (a GPTQ / AWQ config read as auto-round by ``load``)
    elif method == "auto-round":
        fmt = str(qc.get("packing_format", "auto_round:auto_gptq"))
        if fmt not in _PACKING:
            raise CheckpointError(f"packing_format {fmt!r} is not supported; valid: {sorted(_PACKING)}")
        qc["packing"] = _PACKING[fmt]
    else:
        raise CheckpointError(f"quant_method {qc.get('quant_method')!r} is not supported; valid: auto-round, gptq, awq")
    qc["quant_method"] = method
    return qc


def _dynamic_to_extra(dynamic: dict[str, Any]) -> dict[str, Any]:
    """GPTQModel's ``dynamic`` ({'+:regex': overrides, '-:regex': {}}) as extra_config entries."""
    out = {}
    for key, val in dynamic.items():
        neg = key.startswith("-:")
        pattern = key[2:] if key[:2] in ("+:", "-:") else key
        out[pattern] = {"bits": 16} if neg else dict(val)
    return out


def layer_overrides(name: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Overrides for layer ``name``: an exact key wins, else the first regex that matches."""
    if name in extra:
        return dict(extra[name])
    for key, val in extra.items():
        try:
            if re.fullmatch(key, name) or re.search(key, name):
                return dict(val)
        except re.error:
            continue
    return {}


def _packing_of(name: str, keys: dict[str, tuple[str, tuple[int, ...]]], scheme: dict[str, Any],
                default: str) -> str | None:
    """The layer's packing from its tensors, or None when it is stored in 16 bits."""
    if f"{name}.qweight" in keys:
        return default if default in ("gptq", "awq", "auto_round") else "gptq"
    if f"{name}.weight_packed" in keys:
        return "nv_fp4" if scheme.get("data_type", "").startswith("nv") else "mx_fp4"
    w = keys.get(f"{name}.weight")
    if w and w[0].startswith("F8") and f"{name}.weight_scale" in keys:
        return "mx_fp8" if keys[f"{name}.weight_scale"][0] == "U8" else "fp8"
    return None


def layer_desc(name: str, linear: torch.nn.Linear, qc: dict[str, Any],
               keys: dict[str, tuple[str, tuple[int, ...]]], dtype: torch.dtype) -> LayerDesc | None:
    """The LayerDesc of one Linear of the model, or None when the checkpoint keeps it unquantized."""
    scheme = {k: qc[k] for k in _SCHEME_KEYS if k in qc}
    scheme.update({k: v for k, v in layer_overrides(name, qc.get("extra_config") or {}).items() if k in _SCHEME_KEYS})
    packing = _packing_of(name, keys, scheme, qc.get("packing", "gptq"))
    if packing is None:
        return None
    data_type = {"mx_fp4": "mx_fp", "mx_fp8": "mx_fp", "nv_fp4": "nv_fp", "fp8": "fp"}.get(packing, "int")
    bits = int(scheme.get("bits", 4))
    if packing == "fp8":
        bits = 8
    group = scheme.get("group_size", 128)
    block = tuple(group) if isinstance(group, (list, tuple)) else None
    desc = LayerDesc(in_features=linear.in_features, out_features=linear.out_features, bits=bits,
                     group_size=-1 if block else int(group), sym=bool(scheme.get("sym", True)),
                     data_type=data_type, packing=packing, dtype=dtype, act_bits=int(scheme.get("act_bits", 16)),
                     g_idx=f"{name}.g_idx" in keys, block_size=block)  # type: ignore[arg-type]
    _check_shapes(name, desc, keys)
    return desc


def _check_shapes(name: str, d: LayerDesc, keys: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    """Fail early, naming the layer, when the config disagrees with the stored tensors."""
    if d.data_type != "int":
        return
    qw = keys[f"{name}.qweight"][1]
    want = (d.in_features, -(-d.out_features * d.bits // 32)) if d.packing == "awq" else (
        -(-d.in_features * d.bits // 32), d.out_features)
    sc = keys.get(f"{name}.scales", ("", ()))[1]
    if tuple(qw) != want or tuple(sc) != (d.ngroups, d.out_features):
        raise CheckpointError(
            f"layer {name}: qweight {qw} / scales {sc} do not match bits={d.bits}, group_size={d.group_size}, "
            f"packing={d.packing} (expected {want} / {(d.ngroups, d.out_features)}); check quantization_config")

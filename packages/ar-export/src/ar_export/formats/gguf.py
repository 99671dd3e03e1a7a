"""gguf: one llama.cpp file, ``gguf:<type>`` (q4_0 ... q8_0, q2_k_s, q3_k_s/m/l, q4_k_s/m, q5_k_s/m, q6_k).

Each 2-D weight gets the ggml type llama.cpp's mix rules give it (``ar_schemes.gguf_tensor_type``).
A tuned layer whose scheme is that ggml type is packed from its own codes and scales, so the
file computes exactly what ar-core tuned; any other weight (embeddings, the output projection,
layers tuned with another type) is quantized from the model's float weight with the type's math.
1-D tensors (norms, biases) are written as F32.

>>> save(qmodel, model, tok, "out", "gguf:q4_k_m")  # doctest: +SKIP
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ar_kernels.packing import gguf as ggml_pack
from ar_schemes import (
    GGUF_FILE_TYPES,
    QuantizedLayer,
    QuantizedModel,
    QuantScheme,
    SchemeError,
    ggml_scheme,
    ggml_type,
    gguf_tensor_type,
    layer_index,
    quantize,
    tensor_role,
)

from ..base import Exporter, register_format
from ..errors import ExportError
from .gguf_meta import ArchInfo, arch_info, text_config, write_arch, write_tokenizer

log = logging.getLogger("ar")


@register_format("gguf")
class GGUFExporter(Exporter):
    """Writes ``<out_dir>/<name>-<type>.gguf`` with the ``gguf`` package's writer."""

    def __init__(self, fmt: str = "gguf:q4_k_m") -> None:
        _, _, ft = fmt.partition(":")
        if ft.lower() not in GGUF_FILE_TYPES:
            raise ExportError(f"format {fmt!r}: give the GGUF type as gguf:<type>, one of "
                              f"{', '.join('gguf:' + t for t in GGUF_FILE_TYPES)}")
        self.file_type = ft.lower()

    def check(self, layer: str, scheme: QuantScheme) -> str | None:
        if scheme.data_type in ("int_dq", "int_ggml") and scheme.gguf:
            return None
        return (f"scheme data_type={scheme.data_type!r} bits={scheme.bits} is not a GGUF type; tune with the "
                f"GGUF preset (scheme 'GGUF:{self.file_type.upper()}') so each layer gets its ggml type")

    def write(self, qmodel: QuantizedModel, model: Any, tokenizer: Any, out_dir: Path, **options: Any) -> None:
        import gguf

        info = arch_info(model.config)
        name = options.get("gguf_name") or _model_name(model)
        path = Path(out_dir) / f"{name}-{self.file_type}.gguf"
        writer = gguf.GGUFWriter(path, info.gguf_arch)
        write_arch(writer, model.config, info, name)  # Mistral is written (and read back) as a Llama
        writer.add_file_type(int(gguf.LlamaFileType["MOSTLY_" + self.file_type.upper()]))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        if tokenizer is not None:
            write_tokenizer(writer, tokenizer, model.config, info)
        for gname, array, qtype in self.tensors(qmodel, model, info):
            writer.add_tensor(gname, array, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    # ---- tensors -------------------------------------------------------------------------------
    def tensors(self, qmodel: QuantizedModel, model: Any, info: ArchInfo):
        """Yield (gguf name, numpy array, ggml type or None for plain float) for every tensor."""
        import gguf

        cfg = text_config(model.config)
        n_layers = int(cfg.num_hidden_layers)
        arch = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == info.gguf_arch)
        names = gguf.get_tensor_name_map(arch, n_layers)
        tied = _tied(model)
        for hf_name, t in model.state_dict().items():
            module, _, suffix = hf_name.rpartition(".")
            if tied and module.endswith("lm_head"):
                continue  # llama.cpp reads the output projection from token_embd
            gname = names.get_name(module)
            if gname is None:
                raise ExportError(f"no GGUF name for tensor {hf_name!r} of a {model.config.model_type} model; "
                                  f"the gguf package's {info.gguf_arch} name map does not know it")
            gname = f"{gname}.{suffix}"
            if t.dim() == 1:
                yield gname, self._float_1d(t, hf_name, info, cfg), None
            else:
                role = tensor_role(module)
                if tied and role == "token_embd":
                    role = "output"
                array, qtype = self._weight(qmodel, module, role, t, n_layers, cfg)
                if info.permute_qk and role in ("attn_q", "attn_k"):
                    array = _permute_rows(array, cfg, role)
                yield gname, array, qtype

    def _float_1d(self, t: torch.Tensor, hf_name: str, info: ArchInfo, cfg: Any) -> np.ndarray:
        x = t.detach().float()
        if info.norm_plus_one and hf_name.endswith("norm.weight"):
            x = x + 1  # Gemma: the file stores the RMSNorm multiplier 1 + w
        role = tensor_role(hf_name.rpartition(".")[0])
        if info.permute_qk and role in ("attn_q", "attn_k"):  # biases follow their rows
            x = torch.from_numpy(_permute_rows(x.reshape(-1, 1).numpy(), cfg, role)).reshape(-1)
        return x.cpu().numpy()

    def _weight(self, qmodel: QuantizedModel, module: str, role: str | None, t: torch.Tensor,
                n_layers: int, cfg: Any) -> tuple[np.ndarray, Any]:
        """Packed bytes and ggml type of one 2-D weight (out, in)."""
        if module in qmodel.skipped:
            return t.detach().to(torch.float16).cpu().numpy(), None
        n_gqa = cfg.num_attention_heads // (getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads)
        qtype = gguf_tensor_type(self.file_type, role, layer_index(module), n_layers, int(t.shape[1]), n_gqa,
                                 int(getattr(cfg, "num_local_experts", 0) or getattr(cfg, "num_experts", 0) or 0))
        if qtype == "f16":
            return t.detach().to(torch.float16).cpu().numpy(), None
        layer = qmodel.layers.get(module)
        if layer is None or not _same_type(layer.scheme, qtype):
            if layer is not None:
                log.warning("gguf: %s was tuned as %s but llama.cpp's %s mix types it %s; re-quantizing its "
                            "weight with %s", module, layer.scheme.gguf, self.file_type, qtype, qtype)
            layer = QuantizedLayer.from_result(module, ggml_scheme(qtype), quantize(t.detach().float(),
                                                                                     ggml_scheme(qtype)))
        return pack_layer(layer, qtype).numpy(), ggml_pack.ggml_quant_type(qtype)


def pack_layer(layer: QuantizedLayer, qtype: str) -> torch.Tensor:
    """ggml bytes (out, nbytes) of a layer quantized with a GGUF scheme of type ``qtype``."""
    e, dt = layer.extra, layer.scheme.data_type
    if dt == "int_ggml":
        parts = {"d": layer.scale} | ({"m": e["min"]} if "min" in e else {})
    elif dt == "int_dq":
        parts = {"sc": e["sc"], "d": e["d"]} | ({"m": e["m"], "dmin": e["dmin"]} if "dmin" in e else {})
    else:
        raise ExportError(f"layer {layer.name}: data_type {dt!r} has no ggml block layout")
    return ggml_pack.pack(qtype, layer.codes, **parts)


def _same_type(scheme: QuantScheme, qtype: str) -> bool:
    if scheme.data_type not in ("int_dq", "int_ggml") or not scheme.gguf:
        return False
    try:
        return ggml_type(scheme).name == qtype
    except SchemeError:
        return False


def _tied(model: Any) -> bool:
    """True when the output projection shares the embedding (no ``output.weight`` in the file)."""
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    if head is None:
        return True
    return head.weight is emb.weight or head.weight.data_ptr() == emb.weight.data_ptr()


def _permute_rows(array: np.ndarray, cfg: Any, role: str) -> np.ndarray:
    """llama.cpp's q/k row order for Llama-style rope: within each head, row i of the first half
    and row i of the second half become neighbours (2i, 2i + 1). Rows of packed bytes move whole."""
    heads = cfg.num_attention_heads if role == "attn_q" else (cfg.num_key_value_heads or cfg.num_attention_heads)
    rows = array.shape[0]
    idx = np.arange(rows).reshape(heads, 2, rows // heads // 2).swapaxes(1, 2).reshape(-1)
    return np.ascontiguousarray(array[idx])


def _model_name(model: Any) -> str:
    path = str(getattr(model.config, "_name_or_path", "") or getattr(model, "name_or_path", "") or "model")
    return Path(path).name or "model"

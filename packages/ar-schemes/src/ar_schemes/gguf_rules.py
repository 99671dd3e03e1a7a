"""Which ggml type each tensor of a GGUF ``_S`` / ``_M`` / ``_L`` mix gets (llama.cpp's rules).

A GGUF "file type" such as ``q4_k_m`` is a mix: most tensors take the base type (``q4_k``), and
a few sensitive ones take more bits: ``attn_v`` and ``ffn_down`` on some layers, the output
projection always (``q6_k``). A tensor whose row length is not a multiple of its type's block
falls back to a type with smaller blocks (``q4_k`` -> ``q5_0``, ``q6_k`` -> ``q8_0``, ``q2_k`` /
``q3_k`` -> ``iq4_nl``), and to 16 bits when even that does not fit. ar-core tunes each layer
with the type it will be written in, so both it and the GGUF exporter call these functions.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .dtypes.gguf import GGML_TYPES, ggml_scheme
from .errors import choices_error
from .scheme import QuantScheme

# file type -> base ggml type
FILE_TYPES: dict[str, str] = {
    "q4_0": "q4_0", "q4_1": "q4_1", "q5_0": "q5_0", "q5_1": "q5_1", "q8_0": "q8_0",
    "q2_k_s": "q2_k", "q3_k_s": "q3_k", "q3_k_m": "q3_k", "q3_k_l": "q3_k",
    "q4_k_s": "q4_k", "q4_k_m": "q4_k", "q5_k_s": "q5_k", "q5_k_m": "q5_k", "q6_k": "q6_k",
}
# a k-quant tensor whose rows do not split into 256-weight super-blocks takes this type instead
FALLBACK = {"q2_k": "iq4_nl", "q3_k": "iq4_nl", "q4_k": "q5_0", "q5_k": "q5_1", "q6_k": "q8_0"}

# module-name endings (HF) -> GGUF tensor role
_ROLES: tuple[tuple[str, str], ...] = (
    (r"(^|\.)(lm_head|embed_out|output)$", "output"),
    (r"(embed_tokens|wte|word_embeddings)$", "token_embd"),
    (r"(qkv_proj|c_attn|query_key_value|Wqkv)$", "attn_qkv"),
    (r"(v_proj|value)$", "attn_v"),
    (r"(k_proj|key)$", "attn_k"),
    (r"(q_proj|query)$", "attn_q"),
    (r"(o_proj|out_proj|attn\.c_proj|attention\.dense|self_attn\.dense)$", "attn_output"),
    (r"(down_proj|fc2|w2|mlp\.c_proj|dense_4h_to_h)$", "ffn_down"),
    (r"(gate_proj|w1)$", "ffn_gate"),
    (r"(up_proj|fc1|w3|c_fc|dense_h_to_4h)$", "ffn_up"),
)


def tensor_role(name: str) -> str | None:
    """GGUF role of a module name: ``model.layers.3.self_attn.v_proj`` -> ``attn_v`` (None if unknown)."""
    for pattern, role in _ROLES:
        if re.search(pattern, name):
            return role
    return None


def layer_index(name: str) -> int | None:
    """Block index in a module name (``model.layers.3.mlp`` -> 3)."""
    m = re.search(r"\.(?:layers|h|blocks|layer)\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def base_type(file_type: str) -> str:
    """``q4_k_m`` -> ``q4_k``; raises with the valid file types on an unknown one."""
    key = file_type.lower()
    if key not in FILE_TYPES:
        raise choices_error("GGUF file type", file_type, FILE_TYPES)
    return FILE_TYPES[key]


def use_more_bits(i: int, n: int) -> bool:
    """llama.cpp's pick of layers that get more bits: the first and last eighth, every third between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _attn_v(ft: str, t: str, i: int, n: int, n_gqa: int) -> str:
    if ft == "q2_k_s" and n_gqa >= 4:
        return "q4_k"
    if ft == "q3_k_m":
        return "q5_k" if i < 2 else "q4_k"
    if ft == "q3_k_l":
        return "q5_k"
    if ft in ("q4_k_m", "q5_k_m") and use_more_bits(i, n):
        return "q6_k"
    if ft == "q4_k_s" and i < 4:
        return "q5_k"
    return t


def _ffn_down(ft: str, t: str, i: int, n: int) -> str:
    if ft == "q2_k_s" and i < n // 8:
        return "q4_k"
    if ft == "q3_k_m":
        return "q5_k" if i < n // 16 else "q4_k"
    if ft == "q3_k_l":
        return "q5_k"
    if ft in ("q4_k_m", "q5_k_m") and use_more_bits(i, n):
        return "q6_k"
    if ft == "q4_k_s" and i < n // 8:
        return "q5_k"
    return t


def _rule_type(ft: str, role: str | None, i: int, n: int, n_gqa: int, n_expert: int) -> str:
    """The type before the row-size fallback."""
    t = FILE_TYPES[ft]
    if role == "output":
        return t if t == "q8_0" else "q6_k"
    if role == "attn_v":
        return "q8_0" if n_expert == 8 else _attn_v(ft, t, i, n, n_gqa)
    if role == "attn_k" and n_expert == 8:
        return "q8_0"
    if role == "ffn_down":
        return _ffn_down(ft, t, i, n)
    if role == "attn_output":
        if n_expert == 8 and ft in ("q3_k_s", "q3_k_m", "q4_k_s", "q4_k_m"):
            return "q5_k"
        return {"q3_k_m": "q4_k", "q3_k_l": "q5_k"}.get(ft, t)
    if role == "attn_qkv":
        return {"q3_k_m": "q4_k", "q3_k_l": "q4_k", "q4_k_m": "q5_k", "q5_k_m": "q6_k"}.get(ft, t)
    return t


def gguf_tensor_type(file_type: str, role: str | None, layer: int | None = None, n_layers: int = 1,
                     row_size: int | None = None, n_gqa: int = 1, n_expert: int = 0) -> str:
    """ggml type of one tensor in a ``file_type`` mix; ``"f16"`` when no quantized type fits its rows.

    ``role`` is a GGUF role (``attn_v``, ``ffn_down``, ``output``, ...), ``row_size`` the input
    features (the ggml row). The output projection of a model with tied embeddings is the
    ``token_embd`` tensor: pass role ``"output"`` for it.

    >>> gguf_tensor_type("q4_k_m", "ffn_down", layer=0, n_layers=18, row_size=2048)
    'q6_k'
    >>> gguf_tensor_type("q4_k_m", "output", row_size=640)
    'q8_0'
    """
    ft = file_type.lower()
    base_type(ft)
    if role == "output" and row_size is not None and row_size % 256:
        t = "q8_0"  # llama.cpp: an output whose rows are not whole super-blocks is q8_0
    else:
        t = _rule_type(ft, role, layer or 0, n_layers, n_gqa, n_expert)
    if row_size is not None and row_size % GGML_TYPES[t].block:
        t = FALLBACK.get(t, t)
    if row_size is not None and row_size % GGML_TYPES[t].block:
        return "f16"
    return t


def gguf_layer_schemes(scheme: QuantScheme | str, layer_names: Iterable[str], n_layers: int, *,
                       shapes: Mapping[str, tuple[int, int]] | None = None, n_gqa: int = 1,
                       n_expert: int = 0) -> dict[str, QuantScheme | None]:
    """Expand a GGUF preset into one scheme per layer, as llama.cpp would type each tensor.

    ``scheme`` is a GGUF preset (``GGUF:Q4_K_M``) or its file-type name (``q4_k_m``);
    ``shapes`` maps a layer to its (out, in) weight shape and enables the row-size fallback;
    ``n_gqa`` = attention heads / KV heads. None means the layer stays 16-bit.

    >>> s = gguf_layer_schemes("q4_k_m", ["model.layers.0.mlp.down_proj", "model.layers.5.mlp.up_proj"], 18)
    >>> s["model.layers.0.mlp.down_proj"].gguf, s["model.layers.5.mlp.up_proj"].gguf
    ('q6_k', 'q4_k')
    """
    ft = scheme if isinstance(scheme, str) else (scheme.gguf or "")
    ft = ft.lower().removeprefix("gguf:")
    out: dict[str, QuantScheme | None] = {}
    for name in layer_names:
        row = shapes[name][1] if shapes and name in shapes else None
        t = gguf_tensor_type(ft, tensor_role(name), layer_index(name), n_layers, row, n_gqa, n_expert)
        out[name] = None if t == "f16" else ggml_scheme(t)
    return out

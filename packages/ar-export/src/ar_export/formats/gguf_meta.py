"""GGUF metadata: architecture keys and the tokenizer (vocab, scores, types, merges, special tokens).

llama.cpp and transformers' GGUF loader rebuild the model config from these keys alone, so each
supported architecture writes the hyper-parameters its loader reads.
"""
from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ExportError

log = logging.getLogger("ar")


@dataclass(frozen=True)
class ArchInfo:
    """How a transformers ``model_type`` is written in GGUF."""

    gguf_arch: str  # general.architecture and the key prefix
    permute_qk: bool = False  # llama.cpp stores q/k rows of llama-style rope interleaved per head
    norm_plus_one: bool = False  # Gemma's RMSNorm multiplies by (1 + w); GGUF stores 1 + w
    head_dims: bool = False  # write attention.key_length / value_length
    space_runs_user_defined: bool = False  # Gemma's SentencePiece model: runs of spaces are user pieces


ARCHS: dict[str, ArchInfo] = {
    "llama": ArchInfo("llama", permute_qk=True),
    "mistral": ArchInfo("llama", permute_qk=True),
    "qwen2": ArchInfo("qwen2"),
    "qwen3": ArchInfo("qwen3", head_dims=True),
    "gemma3_text": ArchInfo("gemma3", norm_plus_one=True, head_dims=True, space_runs_user_defined=True),
    "gemma3": ArchInfo("gemma3", norm_plus_one=True, head_dims=True, space_runs_user_defined=True),
}

# token types of tokenizer.ggml.token_type
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def arch_info(config: Any) -> ArchInfo:
    mt = getattr(config, "model_type", None)
    if mt not in ARCHS:
        raise ExportError(f"GGUF export does not support model_type {mt!r} yet; supported: {', '.join(sorted(ARCHS))}")
    return ARCHS[mt]


def text_config(config: Any) -> Any:
    """The language-model config (multimodal Gemma3 keeps it under ``text_config``)."""
    return getattr(config, "text_config", None) or config


def head_dim(cfg: Any) -> int:
    return getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads


def write_arch(w: Any, config: Any, info: ArchInfo, name: str) -> None:
    """Hyper-parameters under ``<arch>.*`` (what llama.cpp and transformers read back)."""
    cfg = text_config(config)
    w.add_name(name)
    w.add_context_length(int(cfg.max_position_embeddings))
    w.add_embedding_length(int(cfg.hidden_size))
    w.add_block_count(int(cfg.num_hidden_layers))
    w.add_feed_forward_length(int(cfg.intermediate_size))
    w.add_head_count(int(cfg.num_attention_heads))
    w.add_head_count_kv(int(getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads))
    w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    w.add_vocab_size(int(cfg.vocab_size))
    theta = _rope_theta(cfg)
    if theta is not None:
        w.add_rope_freq_base(float(theta))
    if info.gguf_arch == "llama":
        w.add_rope_dimension_count(head_dim(cfg))
    if info.head_dims:
        w.add_key_length(head_dim(cfg))
        w.add_value_length(head_dim(cfg))
    _write_rope_scaling(w, cfg)
    window = getattr(cfg, "sliding_window", None)
    if window and info.gguf_arch in ("gemma3", "llama"):
        w.add_sliding_window(int(window))


def _write_rope_scaling(w: Any, cfg: Any) -> None:
    """Linear and YaRN rope scaling become keys; Llama 3's frequency table (a ``rope_freqs``
    tensor in llama.cpp files) is not written yet, which only matters past the original context."""
    import gguf

    rs = getattr(cfg, "rope_scaling", None) or {}
    kind = rs.get("rope_type", rs.get("type")) if isinstance(rs, dict) else None
    if kind in ("linear", "yarn") and rs.get("factor"):
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR if kind == "linear" else gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(float(rs["factor"]))
        if kind == "yarn" and rs.get("original_max_position_embeddings"):
            w.add_rope_scaling_orig_ctx_len(int(rs["original_max_position_embeddings"]))
    elif kind not in (None, "default"):
        log.warning("gguf: rope scaling %r is not written; llama.cpp will use plain rope", kind)


def _rope_theta(cfg: Any) -> float | None:
    theta = getattr(cfg, "rope_theta", None)
    if theta is None:  # transformers 5 keeps it in rope_parameters
        params = getattr(cfg, "rope_parameters", None) or {}
        params = params.get("full_attention", params) if isinstance(params, dict) else {}
        theta = params.get("rope_theta") if isinstance(params, dict) else None
    return theta


# ---- tokenizer -------------------------------------------------------------------------------------
def write_tokenizer(w: Any, tokenizer: Any, config: Any, info: ArchInfo) -> None:
    """Vocab, scores, token types, merges and special tokens from a fast tokenizer.

    ``tokenizer.ggml.model`` is ``llama`` (SentencePiece-style BPE with byte fallback: Llama 2,
    Mistral, Gemma) or ``gpt2`` (byte-level BPE: Llama 3, Qwen); the pre-tokenizer name is
    picked from the architecture, as llama.cpp's converter would name it.
    """
    import gguf

    n_vocab = int(text_config(config).vocab_size)
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec.get("model", {})
    spm = bool(model.get("byte_fallback"))
    tokens, scores, types = _vocab(tokenizer, spec, n_vocab, spm, spm and info.space_runs_user_defined)
    w.add_tokenizer_model("llama" if spm else "gpt2")
    w.add_tokenizer_pre(_pre_name(info, spm))
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    if spm:
        w.add_add_space_prefix(False)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        special = gguf.SpecialVocab(Path(tmp), load_merges=model.get("type") == "BPE" and not spm, n_vocab=n_vocab)
        special.add_to_gguf(w, quiet=True)


def _pre_name(info: ArchInfo, spm: bool) -> str:
    if spm:
        return "default"
    return {"qwen2": "qwen2", "qwen3": "qwen2", "llama": "llama-bpe"}.get(info.gguf_arch, "default")


def _vocab(tokenizer: Any, spec: dict[str, Any], n_vocab: int, spm: bool, space_runs: bool = False
           ) -> tuple[list[str], list[float], list[int]]:
    """Tokens by id, padded to the model's vocab size with unused ``[PAD<i>]`` entries.

    SentencePiece-style scores rank the normal pieces by id (-0, -1, -2, ...), which is the
    merge priority of a BPE model; added and special tokens score -1000 as in llama.cpp files.
    ``space_runs``: pieces made only of 2+ "▁" are user-defined runs of spaces (Gemma's model).
    """
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    added = {a["id"]: a for a in spec.get("added_tokens", [])}
    tokens, scores, types = [], [], []
    rank = 0
    for i in range(n_vocab):
        tok = by_id.get(i)
        if tok is None:
            tokens.append(f"[PAD{i}]")
            scores.append(-1000.0)
            types.append(UNUSED)
            continue
        tokens.append(tok)
        if i in added:
            types.append(CONTROL if added[i].get("special") else USER_DEFINED)
            scores.append(-1000.0)
        elif space_runs and len(tok) > 1 and set(tok) == {"\u2581"}:
            tokens[-1] = " " * len(tok)
            types.append(USER_DEFINED)
            scores.append(-1000.0)
        elif spm and len(tok) == 6 and tok.startswith("<0x") and tok.endswith(">"):
            types.append(BYTE)
            scores.append(0.0)
        else:
            types.append(NORMAL)
            scores.append(-float(rank))
            rank += 1
    return tokens, scores, types

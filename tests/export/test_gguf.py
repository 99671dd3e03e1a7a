"""gguf exporter: every tensor read back (gguf-py reader + dequantizers, transformers' GGUF loader)
equals our dequantized values; llama.cpp's type mix; a real model's perplexity through the file."""
from __future__ import annotations

import importlib.resources
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA_DIR, tiny_config, tiny_tokenizer

from ar_export import ExportError, get_exporter, save
from ar_schemes import (
    GGUF_FILE_TYPES,
    QuantizedLayer,
    QuantizedModel,
    get_scheme,
    ggml_scheme,
    gguf_layer_schemes,
    gguf_tensor_type,
    layer_index,
    quantize,
    tensor_role,
)

gguf = pytest.importorskip("gguf")
ARCH_ENUM = {"llama": "LLAMA", "qwen3": "QWEN3"}


def tiny(arch: str):
    """Rows of 256 (hidden) and 512 (ffn) so k-quants apply; qwen3 keeps transformers' default head_dim."""
    from transformers import AutoModelForCausalLM
    cfg = tiny_config(arch, layers=2, hidden=256)
    cfg.intermediate_size = 512
    if arch == "qwen3":
        cfg.head_dim = 128  # transformers' qwen3 GGUF loader does not read attention.key_length
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg).eval()


def gguf_qmodel(model, file_type: str) -> QuantizedModel:
    """RTN with the per-layer ggml types of the mix; the model is left fake-quantized, as ar-core leaves it."""
    cfg = model.config
    lin = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n}
    schemes = gguf_layer_schemes(file_type, lin, cfg.num_hidden_layers,
                                 shapes={n: tuple(m.weight.shape) for n, m in lin.items()},
                                 n_gqa=cfg.num_attention_heads // cfg.num_key_value_heads)
    layers = {}
    with torch.no_grad():
        for n, s in schemes.items():
            if s is not None:
                layers[n] = QuantizedLayer.from_result(n, s, quantize(lin[n].weight.float(), s))
                lin[n].weight.data = layers[n].dequantize(lin[n].weight.dtype)
    return QuantizedModel(layers=layers, default_scheme=get_scheme("GGUF:" + file_type.upper()))


def export(model, qm, tok, tmp_path: Path, ft: str) -> Path:
    out = save(qm, model, tok, tmp_path / ft, f"gguf:{ft}")[f"gguf:{ft}"]
    files = list(out.glob("*.gguf"))
    assert len(files) == 1
    return files[0]


def unpermute(x: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k row interleave (rows i and i + half of a head stored side by side)."""
    rows = x.shape[0]
    idx = np.arange(rows).reshape(heads, 2, rows // heads // 2).swapaxes(1, 2).reshape(-1)
    return x[np.argsort(idx)]


CASES = [("qwen3", ft) for ft in GGUF_FILE_TYPES] + [("llama", ft) for ft in ("q4_k_m", "q2_k_s", "q3_k_l", "q4_1", "q8_0")]


@pytest.mark.parametrize("arch, ft", CASES)
def test_every_tensor_reads_back_as_ours(arch, ft, tmp_path):
    model, tok = tiny(arch), tiny_tokenizer()
    qm = gguf_qmodel(model, ft)
    path = export(model, qm, tok, tmp_path, ft)
    reader = gguf.GGUFReader(path)
    tensors = {t.name: t for t in reader.tensors}
    cfg = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[ARCH_ENUM[arch]], cfg.num_hidden_layers)
    for n, layer in qm.layers.items():
        t = tensors[names.get_name(n) + ".weight"]
        assert t.tensor_type.name.lower() == layer.scheme.gguf
        theirs = gguf.quants.dequantize(t.data, t.tensor_type)
        if arch == "llama" and tensor_role(n) in ("attn_q", "attn_k"):
            theirs = unpermute(theirs, cfg.num_attention_heads if "q_proj" in n else cfg.num_key_value_heads)
        assert np.array_equal(theirs, layer.dequantize().numpy()), n
    emb = tensors["token_embd.weight"]
    assert emb.tensor_type.name.lower() == gguf_tensor_type(ft, "token_embd", row_size=256)
    ours = quantize(model.get_input_embeddings().weight.float(), ggml_scheme(emb.tensor_type.name.lower())).dequant.detach()
    assert np.array_equal(gguf.quants.dequantize(emb.data, emb.tensor_type), ours.numpy())
    assert tensors["output.weight"].tensor_type.name.lower() == gguf_tensor_type(ft, "output", row_size=256)
    _check_metadata(reader, cfg, ft)


def _check_metadata(reader, cfg, ft: str) -> None:
    f = reader.fields
    arch = f["general.architecture"].contents()
    assert f[f"{arch}.block_count"].contents() == cfg.num_hidden_layers
    assert f[f"{arch}.embedding_length"].contents() == cfg.hidden_size
    assert f[f"{arch}.attention.head_count_kv"].contents() == cfg.num_key_value_heads
    assert len(f["tokenizer.ggml.tokens"].data) == cfg.vocab_size
    assert f["general.file_type"].contents() == int(gguf.LlamaFileType["MOSTLY_" + ft.upper()])


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_transformers_loads_the_file(arch, tmp_path):
    from transformers import AutoModelForCausalLM
    model, tok = tiny(arch), tiny_tokenizer()
    qm = gguf_qmodel(model, "q4_k_m")
    path = export(model, qm, tok, tmp_path, "q4_k_m")
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    sd = loaded.state_dict()
    for n, layer in qm.layers.items():
        assert torch.equal(sd[n + ".weight"], layer.dequantize()), n
    for n, t in model.state_dict().items():
        if t.dim() == 1:
            assert torch.equal(sd[n], t.float()), n


def test_format_and_scheme_errors():
    with pytest.raises(ExportError, match="gguf:q4_k_m"):
        get_exporter("gguf:q7_k")
    exp = get_exporter("gguf:q4_k_m")
    assert exp.check("model.layers.0.mlp.up_proj", get_scheme("GGUF:Q4_K_M")) is None
    assert "GGUF" in exp.check("model.layers.0.mlp.up_proj", get_scheme("W4A16"))


def test_layer_tuned_with_another_type_is_requantized(tmp_path):
    """A layer whose scheme differs from the mix's type is re-quantized from the model weight."""
    model, tok = tiny("qwen3"), tiny_tokenizer()
    qm = gguf_qmodel(model, "q4_k_s")
    name = "model.layers.0.mlp.up_proj"
    s = ggml_scheme("q6_k")
    qm.layers[name] = QuantizedLayer.from_result(name, s, quantize(model.get_submodule(name).weight.float(), s))
    path = export(model, qm, tok, tmp_path, "q4_k_s")
    t = {t.name: t for t in gguf.GGUFReader(path).tensors}["blk.0.ffn_up.weight"]
    assert t.tensor_type.name == "Q4_K"
    assert layer_index(name) == 0


# ---- the real model -------------------------------------------------------------------------------
def _ppl(model, windows: list[torch.Tensor]) -> float:
    with torch.no_grad():
        losses = [model(w[None], labels=w[None]).loss.item() for w in windows]
    return math.exp(sum(losses) / len(losses))


def _gemma_case(gemma_path: Path, ft: str, tmp_path: Path) -> tuple[float, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(gemma_path)
    ids = tok(_eval_text()[:60_000], return_tensors="pt").input_ids[0]
    windows = [ids[i * 512:(i + 1) * 512] for i in range(4)]
    model = AutoModelForCausalLM.from_pretrained(gemma_path, dtype=torch.float32).eval()
    qm = gguf_qmodel(model, ft)
    path = export(model, qm, tok, tmp_path, ft)
    emb = model.get_input_embeddings()  # tied: the file's token_embd is typed as the output
    t = gguf_tensor_type(ft, "output", row_size=emb.weight.shape[1])
    emb.weight.data = quantize(emb.weight.data.float(), ggml_scheme(t)).dequant
    ours = _ppl(model, windows)
    del model
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    return ours, _ppl(loaded, windows)


def _eval_text() -> str:
    """wikitext2_eval.txt from ../shared, else ar-eval's shipped excerpt (its first 59,543
    characters, which hold the 4 windows scored here)."""
    path = DATA_DIR / "wikitext2_eval.txt"
    if not path.exists():
        path = importlib.resources.files("ar_eval") / "data" / "wikitext2_eval_excerpt.txt"
    return path.read_text(encoding="utf-8")


def test_gemma_q4_k_m_perplexity_through_the_file(gemma_path, tmp_path):
    ours, theirs = _gemma_case(gemma_path, "q4_k_m", tmp_path)
    assert abs(theirs - ours) / ours < 0.02, (ours, theirs)


@pytest.mark.slow
@pytest.mark.parametrize("ft", ["q4_0", "q2_k_s", "q8_0"])
def test_gemma_perplexity_through_the_file(gemma_path, tmp_path, ft):
    ours, theirs = _gemma_case(gemma_path, ft, tmp_path)
    assert abs(theirs - ours) / ours < 0.02, (ours, theirs)

"""auto_round: the reference auto-round 0.16.1 loads our checkpoints and computes what we computed."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_model, tiny_tokenizer

import ar_export
from ar_schemes import get_scheme

from .qmodels import logits, quantize_model, rel_diff

pytest.importorskip("auto_round")
IDS = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(0))


def _fp16_exact_model():
    """A tiny fp32 Llama whose weights are fp16 values, so loading it in fp16 loses nothing.

    in_features are multiples of 128 so the reference picks its CPU torch kernel for every layer.
    """
    model = tiny_model("llama", hidden=128)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    return model


def _load_reference(path):
    """auto-round's loader through transformers; fp16 so it picks its torch kernel, fp32 to compare."""
    from transformers import AutoModelForCausalLM
    ref = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float16, device_map="cpu")
    return torch.nn.Module.float(ref)  # the quantized model refuses .float(); run its kernels in fp32


@pytest.mark.parametrize("scheme", ["W4A16", "W2A16G64", "W8A16"])
def test_reference_loads_our_checkpoint(scheme, tmp_path):
    model = _fp16_exact_model()
    qmodel = quantize_model(model, scheme)
    ar_export.save(qmodel, model, tiny_tokenizer(), tmp_path, "auto_round")
    cfg = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert cfg["packing_format"] == "auto_round:auto_gptq" and cfg["quant_method"] == "auto-round"
    assert json.loads((tmp_path / "quantization_config.json").read_text()) == cfg
    ref = _load_reference(tmp_path)
    layer = ref.model.layers[0].self_attn.q_proj
    assert type(layer).__module__.startswith("auto_round"), type(layer)
    diff = rel_diff(logits(ref, IDS), logits(model, IDS))
    print(f"{scheme}: max relative logit difference {diff:.2e}")
    assert diff < 1e-3
    # the weights the reference kernels compute with are ours, bit for bit
    for name, ql in [(n, m) for n, m in ref.named_modules() if n in qmodel.layers]:
        with torch.no_grad():
            w = ql(torch.eye(ql.infeatures)).t()
        assert torch.equal(w, qmodel.layers[name].dequantize()), name


def test_mixed_bits_and_skips_go_to_extra_config(tmp_path):
    model = _fp16_exact_model()
    cfg = {"mlp.down_proj": "W8A16", "layers.1.self_attn.o_proj": {"bits": 16, "data_type": "float"}}
    qmodel = quantize_model(model, "W4A16", layer_config=cfg)
    ar_export.save(qmodel, model, tiny_tokenizer(), tmp_path, "auto_round")
    qc = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert qc["extra_config"][r"^model\.layers\.\d+\.mlp\.down_proj$"] == {"bits": 8}  # shared by every block
    assert qc["extra_config"]["model.layers.1.self_attn.o_proj"]["bits"] == 16  # one layer: exact name
    assert qc["block_name_to_quantize"] == ["model.layers"]
    ref = _load_reference(tmp_path)
    assert isinstance(ref.model.layers[1].self_attn.o_proj, torch.nn.Linear)
    assert ref.model.layers[1].mlp.down_proj.bits == 8 and ref.model.layers[1].mlp.up_proj.bits == 4
    assert rel_diff(logits(ref, IDS), logits(model, IDS)) < 1e-3


def test_asym_uses_raw_zero_points(tmp_path):
    model = _fp16_exact_model()
    qmodel = quantize_model(model, get_scheme("W3A16", sym=False))
    ar_export.save(qmodel, model, tiny_tokenizer(), tmp_path, "auto_round")
    qc = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert qc["packing_format"] == "auto_round" and qc["sym"] is False
    ref = _load_reference(tmp_path)
    assert rel_diff(logits(ref, IDS), logits(model, IDS)) < 1e-3


def test_refuses_impossible_pairs():
    exp = ar_export.get_exporter("auto_round")
    assert "gguf" in exp.check("x", get_scheme("GGUF:Q4_K_M"))
    assert exp.check("x", get_scheme("W4A16")) is None
    mixed = {"m.layers.0.self_attn.q_proj": get_scheme("W4A16"), "m.layers.0.self_attn.k_proj": get_scheme("W8A16")}
    problems = exp.check_model(mixed)
    assert problems and "q_proj" in problems[0] and "fused" in problems[0]
    with pytest.raises(ar_export.ExportError, match="fused"):
        ar_export.check_formats("auto_round", mixed)


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["W4A16", "W2A16G64", "W8A16"])
def test_gemma(scheme, gemma_path, tmp_path):
    """Gemma-3-270M (bf16): the reference's logits against our fake-quant model's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(gemma_path, dtype=torch.bfloat16).eval()
    tok = AutoTokenizer.from_pretrained(gemma_path)
    qmodel = quantize_model(model, scheme)
    ar_export.save(qmodel, model, tok, tmp_path, "auto_round")
    ref = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16, device_map="cpu")
    ids = tok("The capital of France is Paris. The capital of Germany is", return_tensors="pt").input_ids
    diff_bf16 = rel_diff(logits(ref, ids), logits(model, ids))
    torch.nn.Module.float(ref)
    model.float()
    for name, layer in qmodel.layers.items():  # our fake-quant weights in fp32, exactly as tuned
        model.get_submodule(name).weight.data = layer.dequantize()
    diff_fp32 = rel_diff(logits(ref, ids), logits(model, ids))
    print(f"gemma-3-270m {scheme}: max relative logit difference bf16 {diff_bf16:.2e}, fp32 {diff_fp32:.2e}")
    assert diff_fp32 < 1e-3


@pytest.mark.parametrize("scheme", ["MXFP4", "MXFP8"])
def test_reference_loads_mx(scheme, tmp_path):
    """auto-round's torch MX kernels compute with our E2M1/E4M3 elements and E8M0 exponents, bit for bit."""
    model = tiny_model("llama", hidden=128).to(torch.bfloat16)
    qmodel = quantize_model(model, scheme)
    ar_export.save(qmodel, model, None, tmp_path, "auto_round")
    qc = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert qc["packing_format"] == "auto_round:llm_compressor" and qc["data_type"] == "mx_fp"
    from transformers import AutoModelForCausalLM
    ref = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16, device_map="cpu")
    for name, layer in qmodel.layers.items():
        ql = ref.get_submodule(name)
        assert type(ql).__module__.startswith("auto_round"), type(ql)
        with torch.no_grad():  # the identity is exact under MX activation quantization
            w = ql(torch.eye(layer.shape[1], dtype=torch.bfloat16)).t()
        assert torch.equal(w, layer.dequantize(torch.bfloat16)), name


@pytest.mark.parametrize("scheme,words", [("NVFP4", ["llm_compressor", "NVFP4A16"]),
                                          ("FPW8A16", ["llm_compressor", "input_scale"]),
                                          ("INT8", ["activations"])])
def test_refuses_what_the_reference_cannot_load(scheme, words):
    msg = ar_export.get_exporter("auto_round").check("x", get_scheme(scheme))
    assert msg and all(w in msg for w in words), msg


def test_reference_loads_gpt2_conv1d_with_a_skipped_layer(tmp_path):
    model = tiny_model("gpt2", hidden=128)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    qmodel = quantize_model(model, "W4A16", ignore=("lm_head", "h.1.mlp.c_proj"))
    ar_export.save(qmodel, model, tiny_tokenizer(), tmp_path, "auto_round")
    qc = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert qc["block_name_to_quantize"] == ["transformer.h"]
    assert qc["extra_config"]["transformer.h.1.mlp.c_proj"]["bits"] == 16
    ref = _load_reference(tmp_path)
    assert type(ref.transformer.h[0].attn.c_attn).__module__.startswith("auto_round")
    assert rel_diff(logits(ref, IDS), logits(model, IDS)) < 1e-5

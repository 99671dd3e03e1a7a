"""auto_gptq and auto_awq: read back by independent readers of the public layouts, and (sym GPTQ)
by the reference auto-round loader; impossible scheme/format pairs refused with a reason."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_model, tiny_tokenizer

import ar_export
from ar_schemes import QuantizedLayer, QuantizedModel, get_scheme, quantize

from .qmodels import logits, quantize_model, rel_diff
from .readers import awq_dequant, gptq_dequant, load_dequantized, load_tensors

IDS = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(1))


def _export(tmp_path, fmt, scheme, **kw):
    model = tiny_model("llama", hidden=128)
    qmodel = quantize_model(model, scheme, **kw)
    ar_export.save(qmodel, model, tiny_tokenizer(), tmp_path, fmt)
    return model, qmodel, json.loads((tmp_path / "config.json").read_text())["quantization_config"]


@pytest.mark.parametrize("scheme", ["W4A16", "W3A16", "W2A16G64", "W8A16", {"scheme": "W4A16", "sym": False}])
def test_gptq_independent_reader(scheme, tmp_path):
    model, qmodel, qc = _export(tmp_path, "auto_gptq", scheme)
    s = get_scheme(scheme)
    assert qc["quant_method"] == "gptq" and qc["bits"] == s.bits and qc["sym"] == s.sym and not qc["desc_act"]
    t = load_tensors(tmp_path)
    for name, layer in qmodel.layers.items():
        w = gptq_dequant(t, name, s.bits, layer.shape[1])
        assert torch.equal(w, layer.dequantize()), name
        assert torch.equal(t[f"{name}.g_idx"], torch.arange(layer.shape[1], dtype=torch.int32) // s.group_size)
    fresh = load_dequantized(tmp_path, tiny_model("llama", hidden=128, seed=5),
                             lambda t, n: gptq_dequant(t, n, s.bits, qmodel.layers[n].shape[1]))
    assert rel_diff(logits(fresh, IDS), logits(model, IDS)) == 0.0


@pytest.mark.parametrize("layer_config", [None, {"mlp.down_proj": "W8A16"}])
def test_gptq_reference_loader(layer_config, tmp_path):
    """auto-round's loader reads GPTQ checkpoints too (quantization_config=AutoRoundConfig()),
    including GPTQModel ``dynamic`` per-layer bits."""
    pytest.importorskip("auto_round")
    from transformers import AutoModelForCausalLM, AutoRoundConfig
    model = tiny_model("llama", hidden=128)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())  # fp16-exact, so the fp16 load loses nothing
    qmodel = quantize_model(model, "W4A16", layer_config=layer_config)
    ar_export.save(qmodel, model, tiny_tokenizer(), tmp_path, "auto_gptq")
    ref = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float16, device_map="cpu",
                                               quantization_config=AutoRoundConfig(backend="auto"))
    assert type(ref.model.layers[0].mlp.up_proj).__module__.startswith("auto_round")
    assert ref.model.layers[1].mlp.down_proj.bits == (8 if layer_config else 4)
    torch.nn.Module.float(ref)
    assert rel_diff(logits(ref, IDS), logits(model, IDS)) < 1e-3


def test_gptq_dynamic_overrides(tmp_path):
    cfg = {"mlp.down_proj": "W8A16", "layers.0.self_attn.o_proj": {"bits": 16, "data_type": "float"}}
    _, qmodel, qc = _export(tmp_path, "auto_gptq", "W4A16", layer_config=cfg)
    dyn = qc["dynamic"]
    assert dyn[r"+:^model\.layers\.\d+\.mlp\.down_proj$"] == {"bits": 8}  # every block: one regex
    assert dyn[r"-:^model\.layers\.0\.self_attn\.o_proj$"] == {}
    t = load_tensors(tmp_path)
    assert "model.layers.0.self_attn.o_proj.weight" in t and t["model.layers.0.self_attn.o_proj.weight"].dtype == torch.float32
    w = gptq_dequant(t, "model.layers.1.mlp.down_proj", 8, 128)
    assert torch.equal(w, qmodel.layers["model.layers.1.mlp.down_proj"].dequantize())


def test_gptq_refuses_zero_point_zero(tmp_path):
    model = tiny_model("llama", hidden=128)
    qmodel = quantize_model(model, {"scheme": "W4A16", "sym": False})
    name = "model.layers.0.mlp.up_proj"
    w = model.get_submodule(name).weight.detach().abs() + 0.01  # all positive: min 0 -> zero point 0
    qmodel.layers[name] = QuantizedLayer.from_result(name, qmodel.default_scheme, quantize(w, qmodel.default_scheme))
    with pytest.raises(ar_export.ExportError, match="auto_round"):
        ar_export.save(qmodel, model, None, tmp_path / "x", "auto_gptq")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("scheme", [{"scheme": "W4A16", "sym": False}, "W4A16", "W4A16G64"])
def test_awq_independent_reader(scheme, tmp_path):
    model, qmodel, qc = _export(tmp_path, "auto_awq", scheme)
    s = get_scheme(scheme)
    assert qc == {**qc, "quant_method": "awq", "version": "gemm", "bits": 4, "group_size": s.group_size,
                  "zero_point": True}
    t = load_tensors(tmp_path)
    for name, layer in qmodel.layers.items():
        out_f, in_f = layer.shape
        assert t[f"{name}.qweight"].shape == (in_f, out_f // 8) and t[f"{name}.scales"].dtype == torch.float16
        assert torch.equal(awq_dequant(t, name, s.group_size), layer.dequantize()), name
    fresh = load_dequantized(tmp_path, tiny_model("llama", hidden=128, seed=5),
                             lambda t, n: awq_dequant(t, n, s.group_size))
    assert rel_diff(logits(fresh, IDS), logits(model, IDS)) == 0.0


@pytest.mark.parametrize("fmt,scheme,words", [
    ("auto_awq", "W2A16", ["auto_awq", "4-bit", "auto_round"]),
    ("auto_awq", "W8A16", ["auto_awq", "W8A16"]),
    ("auto_gptq", "W5A16", ["auto_gptq", "auto_round"]),
    ("auto_gptq", "MXFP4", ["auto_gptq", "mx_fp"]),
    ("auto_awq", "GGUF:Q4_K_M", ["auto_awq", "int_dq"]),
    ("auto_gptq", "INT8", ["activations"]),
])
def test_refusals_name_the_pair_and_a_way_out(fmt, scheme, words):
    msg = ar_export.get_exporter(fmt).check("model.layers.0.mlp.up_proj", get_scheme(scheme))
    assert msg is not None
    for w in words:
        assert w in msg, (w, msg)
    with pytest.raises(ar_export.ExportError, match=fmt):
        ar_export.check_formats(fmt, {"model.layers.0.mlp.up_proj": get_scheme(scheme)})


@pytest.mark.parametrize("fmt", ["auto_gptq", "auto_awq", "llm_compressor", "auto_round"])
def test_fused_groups_need_one_scheme(fmt):
    schemes = {"m.layers.0.mlp.gate_proj": get_scheme("W4A16"), "m.layers.0.mlp.up_proj": get_scheme("W4A16G64"),
               "m.layers.0.self_attn.q_proj": get_scheme("W4A16"), "m.layers.0.self_attn.k_proj": None}
    problems = ar_export.get_exporter(fmt).check_model(schemes)
    assert any("gate_proj/up_proj" in p for p in problems) and any("q_proj/k_proj/v_proj" in p for p in problems)
    ok = {k: get_scheme("W4A16") for k in schemes}
    assert ar_export.get_exporter(fmt).check_model(ok) == []


def test_write_time_refusal(tmp_path):
    """A QuantizedModel that never went through check_formats is still refused before writing."""
    model = tiny_model("llama", hidden=128)
    qmodel = quantize_model(model, "W2A16")
    with pytest.raises(ar_export.ExportError, match="auto_awq"):
        ar_export.save(qmodel, model, None, tmp_path / "awq", "auto_awq")
    assert isinstance(qmodel, QuantizedModel) and not (tmp_path / "awq").exists()


@pytest.mark.parametrize("arch", ["opt", "gpt2", "qwen2"])
def test_gptq_other_architectures(arch, tmp_path):
    """Biases (OPT, Qwen2) and GPT-2's transposed Conv1D weights survive the round trip."""
    model = tiny_model(arch)
    qmodel = quantize_model(model, "W4A16G64")
    ar_export.save(qmodel, model, None, tmp_path, "auto_gptq")
    fresh = load_dequantized(tmp_path, tiny_model(arch, seed=5),
                             lambda t, n: gptq_dequant(t, n, 4, qmodel.layers[n].shape[1]))
    assert rel_diff(logits(fresh, IDS), logits(model, IDS)) < 1e-6


@pytest.mark.parametrize("scheme", ["W4A16", "W8A16", "W2A16G64", {"scheme": "W4A16", "sym": False}])
def test_gptq_loaded_by_transformers_with_gptqmodel(scheme, tmp_path):
    """transformers' own GPTQ path (GPTQModel kernels + optimum) loads our auto_gptq checkpoint on
    the CPU and computes our fake-quant model's logits. Needs `gptqmodel` and `optimum`
    (GPTQModel 7.6 installs on torch 2.13; 7.7 wants torch >= 2.14.1). GPTQModel's plain torch
    kernel is asked for: its default CPU pick for 4-bit (TorchAtenLinear, int4 packed matmul)
    computes in bf16, which alone moves the logits by ~4e-3."""
    pytest.importorskip("gptqmodel")
    pytest.importorskip("optimum")
    from transformers import AutoModelForCausalLM, GPTQConfig
    model = tiny_model("llama", hidden=128)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    qmodel = quantize_model(model, scheme)
    ar_export.save(qmodel, model, tiny_tokenizer(), tmp_path, "auto_gptq")
    ref = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32, device_map="cpu",
                                               quantization_config=GPTQConfig(bits=get_scheme(scheme).bits,
                                                                              backend="torch"))
    assert "gptqmodel" in type(ref.model.layers[0].mlp.up_proj).__module__
    for name, layer in qmodel.layers.items():  # GPTQModel's dequantization is ours, to fp16 rounding
        theirs = ref.get_submodule(name).dequantize_weight().T.float()
        assert torch.equal(theirs, layer.dequantize().half().float()), name
    assert rel_diff(logits(ref, IDS), logits(model, IDS)) < 1e-3

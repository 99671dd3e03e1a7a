"""llm_compressor: the installed compressed-tensors package decompresses our checkpoints to our
weights exactly (int pack-quantized, MXFP4, NVFP4, FP8)."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_model, tiny_tokenizer

import ar_export
from ar_schemes import get_scheme

from .qmodels import quantize_model
from .readers import load_tensors

ct = pytest.importorskip("compressed_tensors")
from compressed_tensors.compressors import BaseCompressor  # noqa: E402
from compressed_tensors.quantization import QuantizationConfig  # noqa: E402

CASES = ["W4A16", "W2A16G64", "W8A16", {"scheme": "W3A16", "sym": False}, {"scheme": "W4A16", "group_size": -1},
         "MXFP4", {"scheme": "NVFP4", "act_bits": 16}, "FPW8A16", "FP8_BLOCK",
         {"scheme": "FP8_STATIC", "act_bits": 16}]


def _decompress(path) -> dict[str, torch.Tensor]:
    """Every quantized layer's weight as compressed-tensors rebuilds it from the checkpoint."""
    qc = json.loads((path / "config.json").read_text())["quantization_config"]
    config = QuantizationConfig.model_validate(qc)
    tensors = load_tensors(path)
    out = {}
    for group in config.config_groups.values():
        compressor = BaseCompressor.get_value_from_registry(group.format)
        for name in group.targets:
            local = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
            out[name] = compressor.decompress(local, group)["weight"]
    return out


@pytest.mark.parametrize("scheme", CASES, ids=str)
def test_decompresses_to_our_weights(scheme, tmp_path):
    model = tiny_model("llama", hidden=128)
    qmodel = quantize_model(model, scheme)
    ar_export.save(qmodel, model, tiny_tokenizer(), tmp_path, "llm_compressor")
    weights = _decompress(tmp_path)
    assert set(weights) == set(qmodel.layers)
    for name, layer in qmodel.layers.items():
        w = weights[name]
        assert w.shape == layer.shape
        # compressed-tensors returns fp4 weights in bf16: ours rounded once to its dtype, bit for bit
        assert torch.equal(w, layer.dequantize().to(w.dtype)), name
        assert w.dtype == torch.float32 or layer.scheme.data_type != "int", w.dtype


def test_config_lists_ignored_layers_and_formats(tmp_path):
    model = tiny_model("llama", hidden=128)
    qmodel = quantize_model(model, "W4A16", layer_config={"mlp.down_proj": "W8A16"})
    ar_export.save(qmodel, model, tiny_tokenizer(), tmp_path, "llm_compressor")
    qc = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "compressed-tensors" and qc["format"] == "pack-quantized"
    assert qc["ignore"] == ["lm_head"] and len(qc["config_groups"]) == 2
    assert json.loads((tmp_path / "quantization_config.json").read_text()) == qc


@pytest.mark.parametrize("scheme,word", [("INT8", "W8A8"), ("NVFP4", "NVFP4A16"), ("FP8_STATIC", "input_scale"),
                                         ("GGUF:Q4_K_M", "gguf")])
def test_refusals(scheme, word):
    msg = ar_export.get_exporter("llm_compressor").check("x", get_scheme(scheme))
    assert msg and word in msg and "llm_compressor" in msg

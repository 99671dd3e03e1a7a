"""QuantizedLayer: the hand-off record keeps codes, scales and extras, and dequantizes bit for bit."""
from __future__ import annotations

import pytest
import torch

from ar_schemes import PRESETS, QuantizedLayer, QuantizedModel, quantize

CASES = ["W4A16", "W3A16G64", "MXFP4", "MXFP4_RCEIL", "MXFP8", "NVFP4", "FPW8A16", "FP8_STATIC", "FP8_BLOCK"]


@pytest.mark.parametrize("name", CASES)
def test_from_result_round_trip(name):
    s = PRESETS[name]
    w = torch.randn(5, 72, generator=torch.Generator().manual_seed(0)) * 0.1
    bias = torch.randn(5)
    r = quantize(w, s)
    layer = QuantizedLayer.from_result("model.layers.0.mlp.up_proj", s, r, bias)
    assert layer.shape == (5, 72)
    fp8 = s.data_type in ("fp",) or (s.data_type.startswith("mx") and s.bits == 8)
    assert layer.codes.dtype == (torch.float8_e4m3fn if fp8 else torch.uint8)
    assert layer.scale.dtype == torch.float32
    if s.data_type == "int":
        assert layer.zero.dtype == torch.int32
    assert set(layer.extra) == set(r.extra)
    assert torch.equal(layer.dequantize(), r.dequant)
    assert layer.dequantize(torch.bfloat16).dtype == torch.bfloat16
    assert torch.equal(layer.bias, bias)


def test_quantized_model_defaults():
    m = QuantizedModel(layers={}, default_scheme=PRESETS["W4A16"])
    assert m.block_names == [] and m.skipped == {} and m.options == {}

"""GGUF quantizers (int_dq k-quants, int_ggml legacy blocks), the type-mix rules and the scale search."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ar_schemes import (
    GGML_TYPES,
    QuantizedLayer,
    get_quantizer,
    get_scheme,
    ggml_scheme,
    gguf_layer_schemes,
    gguf_tensor_type,
    quantize,
    search_kquant_params,
)

gguf = pytest.importorskip("gguf")
K_TYPES = ["q2_k", "q3_k", "q4_k", "q5_k", "q6_k"]
LEGACY = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"]


def _w(rows: int = 8, cols: int = 512, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * 0.02
    w[0, :32] = 0  # an all-zero block
    w[1, :256] = w[1, :256].abs()  # a super-block with no negative weight
    w[2, 32:64] = -0.01  # a constant block
    return w


@pytest.mark.parametrize("name", LEGACY)
def test_legacy_bytes_equal_gguf_py_quantizer(name):
    """Our rounding is ggml's: the packed bytes equal gguf-py's reference quantizer."""
    from ar_kernels.packing.gguf import pack
    w = _w()
    layer = QuantizedLayer.from_result("x", ggml_scheme(name), quantize(w, ggml_scheme(name)))
    parts = {"d": layer.scale} | ({"m": layer.extra["min"]} if "min" in layer.extra else {})
    ours = pack(name, layer.codes, **parts).numpy()
    ref = gguf.quants.quantize(w.numpy(), gguf.GGMLQuantizationType[name.upper()])
    assert np.array_equal(ours, ref)


def test_q8_0_is_amax_over_127():
    w = _w()
    r = quantize(w, get_scheme("GGUF:Q8_0"))
    q = r.codes - 128
    assert q.min() >= -127 and q.max() <= 127
    d = w.reshape(8, -1, 32).abs().amax(-1) / 127
    assert torch.equal(r.scale, d.half().float())


@pytest.mark.parametrize("name", K_TYPES + LEGACY + ["iq4_nl"])
def test_dequantize_reproduces_quantize(name):
    s = ggml_scheme(name)
    r = quantize(_w(), s)
    layer = QuantizedLayer.from_result("x", s, r)
    assert torch.equal(layer.dequantize(), r.dequant)
    assert torch.equal(get_quantizer(s.data_type).dequantize(r.codes, r.scale, r.zero, s, None, r.extra), r.dequant)


@pytest.mark.parametrize("name", K_TYPES)
def test_kquant_extra_codes_in_range(name):
    t = GGML_TYPES[name]
    r = quantize(_w(), ggml_scheme(name))
    sc = r.extra["sc"]
    if t.sym:
        assert sc.min() >= -(2 ** (t.super_bits - 1)) and sc.max() <= 2 ** (t.super_bits - 1) - 1
    else:
        assert sc.min() >= 0 and sc.max() <= 2**t.super_bits - 1 and r.extra["m"].min() >= 0
    assert r.extra["d"].dtype == torch.float16 and r.extra["d"].shape == (8, 2)
    assert r.codes.min() >= 0 and r.codes.max() <= 2**t.bits - 1


def test_error_falls_with_bits():
    w = _w(16, 1024, seed=1)
    err = [((quantize(w, ggml_scheme(n)).dequant - w) ** 2).mean().item() for n in K_TYPES]
    assert err == sorted(err, reverse=True)


@pytest.mark.parametrize("name", ["q2_k", "q3_k", "q4_k", "q6_k", "q4_0", "q4_1", "q8_0"])
def test_gradients_reach_learnables(name):
    s = ggml_scheme(name)
    w = _w()
    shape = (8, 512 // s.group_size)
    v = torch.zeros_like(w, requires_grad=True)
    lo = torch.ones(shape, requires_grad=True)
    hi = torch.ones(shape, requires_grad=True)
    r = quantize(w, s, v, lo, hi)
    ((r.dequant - w * 1.01) ** 2).sum().backward()
    assert v.grad.abs().sum() > 0
    assert lo.grad.abs().sum() + hi.grad.abs().sum() > 0


@pytest.mark.parametrize("preset", ["GGUF:Q2_K_S", "GGUF:Q3_K_M", "GGUF:Q4_K_M", "GGUF:Q6_K", "GGUF:Q4_1"])
def test_search_lowers_weighted_error(preset):
    s = get_scheme(preset)
    w = _w(16, 1024, seed=2)
    w[:, 7] *= 10  # an outlier channel
    imp = torch.rand(1024) + 0.1
    imp[7] = 20.0

    def err(r):
        return (((r.dequant - w) ** 2) * imp).sum().item()
    lo, hi = search_kquant_params(w, s, imp)
    assert lo.shape == hi.shape == (16, 1024 // s.group_size)
    assert err(quantize(w, s, min_scale=lo, max_scale=hi)) < err(quantize(w, s))


def test_gemma_q4_k_m_types_match_llama_cpp():
    """The Gemma-3-270M q4_k_m file llama.cpp wrote: per-role type counts over 18 layers."""
    names = [f"model.layers.{i}.{m}" for i in range(18) for m in
             ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")]
    shapes = {n: ((1024, 640) if "q_proj" in n else (256, 640) if ("k_proj" in n or "v_proj" in n)
                  else (640, 1024) if "o_proj" in n else (640, 2048) if "down" in n else (2048, 640)) for n in names}
    schemes = gguf_layer_schemes(get_scheme("GGUF:Q4_K_M"), names, 18, shapes=shapes, n_gqa=4)
    count: dict[tuple[str, str], int] = {}
    for n, s in schemes.items():
        key = (n.rsplit(".", 1)[1], s.gguf)
        count[key] = count.get(key, 0) + 1
    assert count == {("q_proj", "q5_0"): 18, ("k_proj", "q5_0"): 18, ("v_proj", "q8_0"): 9, ("v_proj", "q5_0"): 9,
                     ("o_proj", "q4_k"): 18, ("gate_proj", "q5_0"): 18, ("up_proj", "q5_0"): 18,
                     ("down_proj", "q6_k"): 9, ("down_proj", "q4_k"): 9}
    assert gguf_tensor_type("q4_k_m", "output", row_size=640) == "q8_0"


@pytest.mark.parametrize("ft, role, layer, expected", [
    ("q2_k_s", "ffn_down", 0, "q4_k"), ("q2_k_s", "ffn_down", 5, "q2_k"), ("q3_k_m", "attn_v", 0, "q5_k"),
    ("q3_k_m", "attn_v", 5, "q4_k"), ("q3_k_l", "attn_output", 3, "q5_k"), ("q4_k_s", "attn_v", 3, "q5_k"),
    ("q5_k_m", "ffn_down", 31, "q6_k"), ("q4_0", "output", 0, "q6_k"), ("q8_0", "output", 0, "q8_0"),
    ("q4_k_m", "ffn_up", 0, "q4_k"),
])
def test_mix_rules(ft, role, layer, expected):
    assert gguf_tensor_type(ft, role, layer, 32, row_size=4096, n_gqa=4) == expected


@pytest.mark.parametrize("ft, row, expected", [("q2_k_s", 640, "iq4_nl"), ("q4_k_s", 640, "q5_0"),
                                               ("q5_k_s", 640, "q5_1"), ("q6_k", 640, "q8_0"),
                                               ("q4_k_m", 48, "f16"), ("q4_0", 48, "f16")])
def test_row_size_fallback(ft, row, expected):
    assert gguf_tensor_type(ft, "ffn_up", 5, 32, row_size=row) == expected


def test_unknown_file_type_lists_choices():
    with pytest.raises(ValueError, match="q4_k_m"):
        gguf_tensor_type("q4_k_x", "attn_v")

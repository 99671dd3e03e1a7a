"""GGUF schemes in ar_core.quantize: llama.cpp's type mix per layer, the imatrix-weighted
k-quant search for optimized RTN, and tuning of v with the searched scales frozen."""
import pytest
import torch
from conftest import tiny_config, tiny_model

from ar_core import quantize, search_clip, search_range
from ar_core.rtn import _importance, group_error
from ar_schemes import ggml_scheme, search_kquant_params


def _samples(n=4, seq=32, seed=0):
    return torch.randint(3, 256, (n, seq), generator=torch.Generator().manual_seed(seed))


def _model():
    """A tiny llama whose in-features (256, 512) are whole k-quant super-blocks."""
    from transformers import AutoModelForCausalLM
    cfg = tiny_config("llama", hidden=256)
    cfg.intermediate_size = 512
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg).eval()


def test_gguf_preset_types_layers_as_the_mix():
    q = quantize(_model(), None, "GGUF:Q4_K_M", None, iters=0, disable_opt_rtn=True)
    types = {n: layer.scheme.gguf for n, layer in q.layers.items()}
    # llama.cpp gives ffn_down / attn_v more bits on the first and last eighth of the layers
    assert types["model.layers.1.mlp.down_proj"] == types["model.layers.1.self_attn.v_proj"] == "q6_k"
    assert types["model.layers.0.mlp.down_proj"] == "q4_k"
    assert types["model.layers.0.self_attn.q_proj"] == "q4_k"
    small = quantize(tiny_model("llama"), None, "GGUF:Q4_K_M", None, iters=0, disable_opt_rtn=True)
    # 64-wide rows are not whole super-blocks: llama.cpp's fallback q5_0, not 16-bit
    assert small.layers["model.layers.1.self_attn.q_proj"].scheme.gguf == "q5_0"
    assert not any(".layers." in n for n in small.skipped)


@pytest.mark.parametrize("name", ["q2_k", "q3_k", "q4_k", "q6_k", "q5_0", "q4_1", "q8_0"])
def test_search_range_never_worse_than_clip_grid(name):
    s = ggml_scheme(name)
    g = torch.Generator().manual_seed(1)
    w = torch.randn(16, 512, generator=g)
    w[:, 3] *= 10
    imp = torch.rand(512, generator=g) ** 3 + 0.01
    impg = _importance(w, s, imp)
    clip = search_clip(w, s, imp)
    e_clip = group_error(w, s, impg, clip, clip).sum()
    e_new = group_error(w, s, impg, *search_range(w, s, imp)).sum()
    assert e_new <= e_clip
    if s.data_type == "int_dq":
        lo, hi = search_kquant_params(w, s, imp)
        assert e_new <= group_error(w, s, impg, lo, hi).sum()


def test_optimized_rtn_uses_the_imatrix_search():
    q_rtn = quantize(_model(), None, "GGUF:Q2_K_S", _samples(), iters=0, nsamples=4, seqlen=32, disable_opt_rtn=True)
    q_opt = quantize(_model(), None, "GGUF:Q2_K_S", _samples(), iters=0, nsamples=4, seqlen=32)
    ref = _model()
    for name in ("model.layers.0.mlp.up_proj", "model.layers.1.self_attn.o_proj"):
        w = ref.get_submodule(name).weight.float()
        e_rtn = (q_rtn.layers[name].dequantize(torch.float32) - w).pow(2).sum()
        e_opt = (q_opt.layers[name].dequantize(torch.float32) - w).pow(2).sum()
        assert e_opt < e_rtn, name


def test_tuning_moves_v_only_and_keeps_the_super_scales():
    kw = dict(nsamples=4, seqlen=32, batch_size=4, amp=False, enable_torch_compile=False)
    start = quantize(_model(), None, "GGUF:Q2_K_S", _samples(), iters=0, **kw)
    tuned = quantize(_model(), None, "GGUF:Q2_K_S", _samples(), iters=10, **kw)
    changed = 0
    for name, layer in start.layers.items():
        other = tuned.layers[name]
        assert layer.scheme == other.scheme
        for key in layer.extra:  # d, sc (and dmin, m): the frozen scales
            assert torch.equal(layer.extra[key], other.extra[key]), (name, key)
        assert torch.equal(layer.scale, other.scale), name
        changed += int(not torch.equal(layer.codes, other.codes))
    assert changed  # the rounding moved somewhere
    for b in tuned.stats["blocks"]:
        assert b["best_loss"] < b["first_loss"] and b["tuned_loss"] <= b["start_loss"], b

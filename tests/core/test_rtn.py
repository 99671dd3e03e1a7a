"""RTN and optimized RTN end to end on tiny models of every architecture."""
import pytest
import torch
from conftest import TINY_ARCHS, tiny_model

from ar_core import find_targets, optimized_rtn, quantize, rtn
from ar_schemes import get_scheme, qdq


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_rtn_fake_quantizes_every_block_weight(arch):
    model = tiny_model(arch)
    before = {t.name: t.weight2d().clone() for t in find_targets(model)}
    qmodel = quantize(model, None, "W4A16", None, iters=0, disable_opt_rtn=True)
    scheme = get_scheme("W4A16")
    assert qmodel.layers, "nothing quantized"
    after = {t.name: t.weight2d() for t in find_targets(model)}
    for name, layer in qmodel.layers.items():
        expect = qdq(before[name].float(), scheme).to(after[name].dtype)
        assert torch.equal(after[name], expect), name
        assert torch.equal(layer.dequantize(after[name].dtype), after[name]), name
    assert "lm_head" in qmodel.skipped


def test_lm_head_quantized_when_asked_and_untied():
    model = tiny_model("llama")
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    qmodel = quantize(model, None, "W4A16", None, iters=0, disable_opt_rtn=True, quant_lm_head=True)
    assert "lm_head" in qmodel.layers


def test_optimized_rtn_lowers_weighted_error():
    torch.manual_seed(0)
    w = torch.randn(64, 256) * torch.rand(256) * 3
    imatrix = torch.rand(256) ** 4 * 10
    for name in ("W4A16", "W3A16", "W2A16G64"):
        s = get_scheme(name)
        plain = (rtn(w, s).dequant - w).pow(2).mul(imatrix).sum()
        opt = (optimized_rtn(w, s, imatrix)[0].dequant - w).pow(2).mul(imatrix).sum()
        assert opt < plain * 0.97, name


def test_layers_not_multiple_of_32_stay_16_bit():
    model = tiny_model("llama", hidden=48)
    qmodel = quantize(model, None, "W4A16", None, iters=0, disable_opt_rtn=True)
    assert any("not a multiple of 32" in r for r in qmodel.skipped.values())

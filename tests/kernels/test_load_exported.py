"""ar_export writes, ar_kernels loads: every int format the exporter writes comes back bit-exact.

Also the acceptance test on the real model: Gemma-3-270M W4A16 exported as auto_round, loaded
with ``ar_kernels.load`` and generating 20 tokens greedily, gives the fake-quant model's tokens.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import ar_kernels
from ar_kernels import QuantLinear, TorchIntLinear

ar_export = pytest.importorskip("ar_export")
pytest.importorskip("transformers")
from conftest import tiny_model, tiny_tokenizer  # noqa: E402


def fake_quantize(model: torch.nn.Module, scheme: str | dict, ignore: tuple[str, ...] = ("lm_head",)):
    """RTN-quantize every Linear in place (fake quant, as ar-core leaves it); the QuantizedModel."""
    from ar_schemes import QuantizedLayer, QuantizedModel, get_scheme, quantize, resolve_layer_schemes
    default = get_scheme(scheme)
    mods = dict(model.named_modules())
    names = [n for n, m in mods.items() if isinstance(m, torch.nn.Linear)]
    layers = {}
    with torch.no_grad():
        for name, s in resolve_layer_schemes(names, default, None, ignore).items():
            if s is None:
                continue
            r = quantize(mods[name].weight.detach().float(), s)
            layers[name] = QuantizedLayer.from_result(name, s, r, mods[name].bias)
            mods[name].weight.data = r.dequant.to(mods[name].weight.dtype)
    blocks = sorted({n.rsplit(".", 2)[0] for n in layers if ".layers." in n})
    return QuantizedModel(layers, default, block_names=[b for b in blocks if b.split(".")[-1].isdigit()])


def _bf16(arch: str, tmp: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM
    tiny_model(arch, hidden=128).save_pretrained(tmp / "src")
    return AutoModelForCausalLM.from_pretrained(tmp / "src", dtype=torch.bfloat16).eval()


@pytest.mark.parametrize("fmt,scheme", [
    ("auto_round", "W4A16"), ("auto_round", {"bits": 3, "group_size": 128, "sym": False}),
    ("auto_round", {"bits": 4, "group_size": 32, "sym": False}), ("auto_round", "W2A16G64"),
    ("auto_round", "W8A16"), ("auto_gptq", "W4A16"), ("auto_awq", {"bits": 4, "group_size": 128, "sym": False}),
    ("auto_round", "MXFP4"), ("auto_round", "MXFP8"),  # float formats, emulated by torch:float
])
def test_exported_checkpoint_loads_bit_exact(tmp_path: Path, fmt: str, scheme: str | dict) -> None:
    model = _bf16("qwen2", tmp_path)
    qmodel = fake_quantize(model, scheme)
    ar_export.save(qmodel, model, tiny_tokenizer(), tmp_path / "q", fmt)
    q = ar_kernels.load(tmp_path / "q", backend="torch")
    assert sum(isinstance(m, QuantLinear) for m in q.modules()) == len(qmodel.layers)
    ids = torch.randint(3, 250, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(q(ids).logits, model(ids).logits)


@pytest.mark.slow
def test_gemma_w4a16_generates_fake_quant_tokens(gemma_path: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(gemma_path, dtype=torch.bfloat16).eval()
    tok = AutoTokenizer.from_pretrained(gemma_path)
    qmodel = fake_quantize(model, "W4A16")
    ar_export.save(qmodel, model, tok, tmp_path, "auto_round")
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        want = model.generate(**ids, max_new_tokens=20, do_sample=False)
    del model
    q = ar_kernels.load(tmp_path, device="cpu", backend="auto")
    assert sum(isinstance(m, TorchIntLinear) for m in q.modules()) == len(qmodel.layers) == 18 * 7
    with torch.no_grad():
        got = q.generate(**ids, max_new_tokens=20, do_sample=False)
    assert got.shape[1] == want.shape[1] == ids.input_ids.shape[1] + 20
    assert torch.equal(got, want), (tok.decode(got[0]), tok.decode(want[0]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_load_on_cuda_picks_gpu_kernels(tmp_path: Path) -> None:
    """On a GPU, 4-bit layers run the cuda backend (triton where a shape needs it); logits stay close at 32 and 80
    rows."""
    pytest.importorskip("triton")
    from ar_kernels import CudaIntLinear, TritonIntLinear
    model = _bf16("qwen2", tmp_path)
    qmodel = fake_quantize(model, "W4A16")
    ar_export.save(qmodel, model, tiny_tokenizer(), tmp_path / "q", "auto_round")
    q = ar_kernels.load(tmp_path / "q", device="cuda")
    assert sum(isinstance(m, (CudaIntLinear, TritonIntLinear)) for m in q.modules()) == len(qmodel.layers)
    assert any(isinstance(m, CudaIntLinear) for m in q.modules())
    assert any(m._gemm_serves(80, torch.bfloat16) for m in q.modules() if isinstance(m, CudaIntLinear))
    model = model.cuda()
    with torch.no_grad():
        for length in (16, 40):  # 32 rows: the GEMV; 80 rows: the mid-batch GEMM
            ids = torch.randint(3, 250, (2, length), generator=torch.Generator().manual_seed(length)).cuda()
            want = model(ids).logits.float()
            got = q(ids).logits.float()
            assert float((got - want).norm() / want.norm()) < 1e-2, length
        out = q.generate(ids[:1, :4], max_new_tokens=8, do_sample=False)  # decode: the GEMV
    assert out.shape == (1, 12)

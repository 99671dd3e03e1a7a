"""Loading checkpoints: auto_round (GPTQ / AWQ / raw-zp packings), GPTQ and AWQ configs, transformers.

Tiny random models (tests/conftest.py) are quantized with ar_schemes' RTN, written in the
reference layout (``_checkpoint.py``), loaded with ``ar_kernels.load`` and compared with the
fake-quant model: the torch backend must give the same logits bit for bit.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ar_kernels
from ar_kernels import CheckpointError, TorchIntLinear

from ._checkpoint import quantize_to_checkpoint

pytest.importorskip("transformers")
from conftest import tiny_model  # noqa: E402


def bf16_model(arch: str, tmp_path: Path) -> torch.nn.Module:
    """A tiny model as ``from_pretrained(dtype=bf16)`` builds it (fp32 rotary buffers, unlike ``.to()``)."""
    from transformers import AutoModelForCausalLM
    tiny_model(arch).save_pretrained(tmp_path / "src")
    return AutoModelForCausalLM.from_pretrained(tmp_path / "src", dtype=torch.bfloat16).eval()


def _roundtrip(tmp_path: Path, arch: str = "llama", **kw: object) -> tuple[torch.nn.Module, torch.nn.Module]:
    fq = quantize_to_checkpoint(bf16_model(arch, tmp_path), None, tmp_path / "q", group=32, **kw)
    return fq, ar_kernels.load(tmp_path / "q", device="cpu", backend="torch")


def _same_logits(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    ids = torch.randint(3, 250, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a(ids).logits, b(ids).logits)


@pytest.mark.parametrize("packing,bits,sym", [
    ("auto_round:auto_gptq", 4, True), ("auto_round:auto_awq", 4, False), ("auto_round", 2, False),
    ("auto_round:auto_gptq", 3, True), ("auto_round:auto_gptq", 8, True),
])
def test_load_auto_round_equals_fake_quant(tmp_path: Path, packing: str, bits: int, sym: bool) -> None:
    fq, q = _roundtrip(tmp_path, packing=packing, bits=bits, sym=sym)
    layers = [m for m in q.modules() if isinstance(m, TorchIntLinear)]
    assert len(layers) == 2 * 7  # q, k, v, o, gate, up, down in each of 2 blocks
    assert all(m.scales.dtype == torch.float16 for m in layers)  # stored scales are not rounded to bf16
    assert _same_logits(fq, q)
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        assert torch.equal(fq.generate(ids, max_new_tokens=6, do_sample=False),
                           q.generate(ids, max_new_tokens=6, do_sample=False))


def test_gptq_checkpoint_converted_on_load(tmp_path: Path) -> None:
    """A GPTQ (quant_method gptq) checkpoint with g_idx and a dynamic override skipping one layer."""
    fq = quantize_to_checkpoint(bf16_model("llama", tmp_path), None, tmp_path, group=32)
    from safetensors.torch import load_file, save_file
    sd = load_file(str(tmp_path / "model.safetensors"))
    for k in [k for k in sd if k.endswith(".qweight")]:
        sd[k.replace("qweight", "g_idx")] = torch.arange(64 if "down_proj" not in k else 128,
                                                         dtype=torch.int32) // 32
    save_file(sd, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": 32, "sym": True, "desc_act": False,
                                  "checkpoint_format": "gptq", "dynamic": {"-:.*never.*": {}}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    q = ar_kernels.load(tmp_path, backend="torch")
    assert _same_logits(fq, q)


def test_awq_checkpoint_converted_on_load(tmp_path: Path) -> None:
    fq = quantize_to_checkpoint(bf16_model("qwen2", tmp_path), None, tmp_path, group=32, sym=False,
                                packing="auto_round:auto_awq")
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": 32, "zero_point": True,
                                  "version": "gemm"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert _same_logits(fq, ar_kernels.load(tmp_path))


def test_transformers_from_pretrained(tmp_path: Path) -> None:
    """With our quantizer registered, plain ``from_pretrained`` loads an auto-round checkpoint."""
    from transformers import AutoModelForCausalLM
    from transformers.quantizers import auto
    fq = quantize_to_checkpoint(bf16_model("llama", tmp_path), None, tmp_path, group=32)
    before = auto.AUTO_QUANTIZER_MAPPING.get("auto-round")
    try:
        assert ar_kernels.register_transformers_quantizer(force=True)
        model = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    finally:
        auto.AUTO_QUANTIZER_MAPPING["auto-round"] = before
    assert any(isinstance(m, TorchIntLinear) for m in model.modules())
    assert _same_logits(fq, model)


def test_register_defers_to_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    from ar_kernels import transformers as art
    monkeypatch.delenv("AR_KERNELS_TRANSFORMERS", raising=False)
    monkeypatch.setattr(art, "reference_available", lambda: True)
    assert ar_kernels.register_transformers_quantizer() is False


def test_unsupported_config_is_explained(tmp_path: Path) -> None:
    quantize_to_checkpoint(bf16_model("llama", tmp_path), None, tmp_path, group=32)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["quantization_config"]["packing_format"] = "exl2"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="packing_format 'exl2' is not supported"):
        ar_kernels.load(tmp_path)


def test_config_disagreeing_with_tensors(tmp_path: Path) -> None:
    quantize_to_checkpoint(bf16_model("llama", tmp_path), None, tmp_path, group=32)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["quantization_config"]["group_size"] = 64
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match bits=4, group_size=64"):
        ar_kernels.load(tmp_path)

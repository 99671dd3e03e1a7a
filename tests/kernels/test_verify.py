"""Damaged checkpoints are refused with the tensor named, before anything loads."""
import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

import ar_kernels
from ar_kernels import verify_checkpoint
from ar_kernels.errors import CheckpointError


@pytest.fixture
def ckpt(tmp_path):
    d = tmp_path / "ckpt"
    d.mkdir()
    save_file({"a.qweight": torch.arange(64, dtype=torch.int32).reshape(8, 8),
               "b.scales": torch.ones(2, 8, dtype=torch.float16)}, d / "model.safetensors")
    (d / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "auto-round"}}))
    return d


def test_intact_checkpoint_lists_tensors(ckpt):
    assert verify_checkpoint(ckpt) == {"a.qweight": ("I32", (8, 8)), "b.scales": ("F16", (2, 8))}


def test_truncated_file_names_the_tensor(ckpt):
    f = ckpt / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-10])  # the last tensor loses its tail
    with pytest.raises(CheckpointError, match=r"tensor '(a\.qweight|b\.scales)' is truncated"):
        verify_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match="is truncated"):
        ar_kernels.load(ckpt)


def test_truncated_header(ckpt):
    f = ckpt / "model.safetensors"
    f.write_bytes(f.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="header is incomplete"):
        verify_checkpoint(ckpt)


def test_shape_that_does_not_match_the_bytes(ckpt):
    f = ckpt / "model.safetensors"
    raw = f.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header["a.qweight"]["shape"] = [8, 16]
    new = json.dumps(header, separators=(",", ":")).encode().ljust(n)
    assert len(new) == n
    f.write_bytes(raw[:8] + new + raw[8 + n:])
    with pytest.raises(CheckpointError, match=r"tensor 'a\.qweight' declares I32\[8, 16\]"):
        verify_checkpoint(ckpt)


def test_index_names_a_missing_tensor(ckpt, tmp_path):
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a.qweight": "model.safetensors", "c.qzeros": "model-00002.safetensors"}}))
    with pytest.raises(CheckpointError, match=r"tensor 'c\.qzeros' is listed in the index"):
        verify_checkpoint(ckpt)
    shutil.rmtree(tmp_path / "ckpt")


def test_checkpoint_missing_a_quantized_tensor_is_refused(tmp_path):
    """A tensor the config implies but no file holds (not listed in any index) is refused by name."""
    from conftest import tiny_model, tiny_tokenizer
    from safetensors.torch import load_file

    from ar_export import save
    from ar_schemes import QuantizedLayer, QuantizedModel, get_scheme, quantize
    model, scheme = tiny_model("llama"), get_scheme("W4A16")
    layers = {}
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and name != "lm_head":
            layers[name] = QuantizedLayer.from_result(name, scheme, quantize(mod.weight.detach(), scheme))
    out = tmp_path / "ck"
    save(QuantizedModel(layers=layers, default_scheme=scheme, block_names=["model.layers.0", "model.layers.1"]),
         model, tiny_tokenizer(), out, "auto_round")
    ar_kernels.load(out)  # intact: loads
    tensors = load_file(out / "model.safetensors")
    del tensors["model.layers.1.self_attn.k_proj.qzeros"]
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"missing tensor\(s\) .model\.layers\.1\.self_attn\.k_proj\.qzeros."):
        ar_kernels.load(out)

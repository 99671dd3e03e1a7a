"""Numerical guards and out-of-memory retries of the tuning loop."""
import importlib

import pytest
import torch
from conftest import tiny_model

from ar_core import QuantizeError, quantize


def _samples(n=4, seq=32):
    return torch.randint(3, 256, (n, seq), generator=torch.Generator().manual_seed(0))


def test_nan_weight_named():
    model = tiny_model("llama")
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[3, 5] = float("nan")
    with pytest.raises(QuantizeError, match=r"model\.layers\.1\.mlp\.up_proj holds NaN"):
        quantize(model, None, "W4A16", None, iters=0, disable_opt_rtn=True)


def test_nan_activation_named():
    model = tiny_model("llama")
    with torch.no_grad():
        model.model.layers[0].input_layernorm.weight[0] = float("inf")
    with pytest.raises(QuantizeError, match="block 0 of the full-precision model gives NaN/Inf"):
        quantize(model, None, "W4A16", _samples(), iters=2, nsamples=4, seqlen=32)


def test_tuned_never_worse_than_start_over_all_samples():
    q = quantize(tiny_model("qwen2"), None, "W2A16G64", _samples(), iters=6, nsamples=4, seqlen=32, batch_size=2,
                 lr=0.5)  # a too-large lr: tuning may well end worse than it started
    for b in q.stats["blocks"]:
        kept = b["start_loss"] if b["fell_back"] else b["tuned_loss"]
        assert kept == min(b["start_loss"], b["tuned_loss"])


def test_out_of_memory_retries_with_smaller_micro_batch(monkeypatch, caplog):
    sr = importlib.import_module("ar_core.signround")
    real = sr.block_loss

    def oom_above_one_sample(block, x, *a, **k):
        if x.shape[0] > 1:
            raise torch.OutOfMemoryError("simulated")
        return real(block, x, *a, **k)
    monkeypatch.setattr(sr, "block_loss", oom_above_one_sample)
    with caplog.at_level("WARNING", logger="ar"):
        q = quantize(tiny_model("llama"), None, "W4A16", _samples(), iters=2, nsamples=4, seqlen=32, batch_size=4)
    assert len(q.layers) == 14
    assert "retrying with batch_size=1, gradient_accumulate_steps=4" in caplog.text

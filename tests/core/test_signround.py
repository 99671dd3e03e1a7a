"""SignRound tuning: the tuned loss beats RTN, determinism, options, resume."""
import pytest
import torch
from conftest import TINY_ARCHS, tiny_model

from ar_core import QuantizeError, quantize


def _samples(n=4, seq=32, seed=0):
    return torch.randint(3, 256, (n, seq), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_tuned_loss_below_rtn(arch):
    # batch = all samples, so every iteration scores the same batch and iteration 0 is plain RTN
    model = tiny_model(arch)
    q = quantize(model, None, "W2A16G64", _samples(), iters=8, nsamples=4, seqlen=32, batch_size=4,
                 disable_opt_rtn=True, amp=False)
    for b in q.stats["blocks"]:
        assert b["best_loss"] < b["first_loss"], b


def test_same_seed_bit_identical():
    runs = []
    for _ in range(2):
        model = tiny_model("qwen3")
        q = quantize(model, None, "W4A16", _samples(), iters=4, nsamples=4, seqlen=32, batch_size=2, seed=7)
        runs.append(q)
    for name, layer in runs[0].layers.items():
        other = runs[1].layers[name]
        assert torch.equal(layer.codes, other.codes) and torch.equal(layer.scale, other.scale), name


@pytest.mark.parametrize("opts", [dict(adam=True), dict(enable_minmax_tuning=False), dict(not_use_best_mse=True),
                                  dict(enable_quanted_input=False), dict(gradient_accumulate_steps=2),
                                  dict(low_gpu_mem_usage=True)])
def test_options_run(opts):
    model = tiny_model("llama")
    q = quantize(model, None, "W4A16", _samples(), iters=3, nsamples=4, seqlen=32, batch_size=2, **opts)
    assert len(q.layers) == 14


@pytest.mark.parametrize("scheme", ["MXFP4", "NVFP4", "FPW8A16", "W4A16G64"])
def test_tuning_other_data_types(scheme):
    model = tiny_model("llama")
    q = quantize(model, None, scheme, _samples(), iters=3, nsamples=4, seqlen=32, batch_size=4)
    assert len(q.layers) == 14


def test_bad_options_refused():
    model = tiny_model("llama")
    with pytest.raises(QuantizeError, match="iters=-1"):
        quantize(model, None, "W4A16", _samples(), iters=-1)
    with pytest.raises(QuantizeError, match="unknown option"):
        quantize(model, None, "W4A16", _samples(), iterz=3)
    with pytest.raises(QuantizeError, match="gave 4 samples but nsamples=8"):
        quantize(model, None, "W4A16", _samples(), iters=1, nsamples=8, seqlen=32)


def test_resume_after_interruption_is_identical(tmp_path, monkeypatch):
    import importlib
    qm = importlib.import_module("ar_core.quantize")
    kw = dict(iters=3, nsamples=4, seqlen=32, batch_size=2, work_dir=str(tmp_path / "work"))
    full = quantize(tiny_model("llama", layers=4), None, "W4A16", _samples(), **kw)

    real = qm._quantize_block

    def crash_at_block_2(*args, **kwargs):
        if args[6] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(qm, "_quantize_block", crash_at_block_2)
    with pytest.raises(KeyboardInterrupt):
        quantize(tiny_model("llama", layers=4), None, "W4A16", _samples(), **kw)
    monkeypatch.setattr(qm, "_quantize_block", real)
    resumed = quantize(tiny_model("llama", layers=4), None, "W4A16", _samples(), resume=True, **kw)
    assert resumed.layers.keys() == full.layers.keys()
    for name, layer in full.layers.items():
        assert torch.equal(layer.codes, resumed.layers[name].codes), name
        assert torch.equal(layer.scale, resumed.layers[name].scale), name


def test_cpu_tuning_uses_eager_attention_and_restores_the_models_choice(monkeypatch):
    import sys
    q_mod = sys.modules["ar_core.quantize"]  # the package exports the function under the same name
    model = tiny_model("llama")
    model.set_attn_implementation("sdpa")
    seen = []
    real = q_mod._run_blocks

    def spy(m, *args, **kwargs):
        seen.append(m.config._attn_implementation)
        return real(m, *args, **kwargs)
    monkeypatch.setattr(q_mod, "_run_blocks", spy)
    quantize(model, None, "W4A16", torch.randint(3, 256, (4, 16)), iters=2, nsamples=4, seqlen=16, batch_size=2,
             enable_torch_compile=False)
    assert seen == ["eager"] and model.config._attn_implementation == "sdpa"

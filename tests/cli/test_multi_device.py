"""`ar quantize` on several devices: flags refused before loading, and data-parallel on CPU ranks."""
import pytest
import torch

from ar_cli.main import main


@pytest.fixture
def base(tmp_path, tiny_model_dir):
    data = tmp_path / "calib.txt"
    data.write_text(" ".join(f"t{(i * 7) % 250}" for i in range(4000)))
    return ["quantize", "--model", str(tiny_model_dir), "--dataset", str(data), "--seqlen", "32", "--nsamples", "8",
            "--iters", "3", "--format", "fake", "--disable_amp", "--disable_torch_compile"]


def _no_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("extra,message", [
    (["--device", "0,1"], "--device '0,1', entry '0': this machine has 0 CUDA GPU(s); valid choices: cpu"),
    (["--device", "cpu,0"], "--device 'cpu,0', entry '0': this machine has 0 CUDA GPU(s)"),
    (["--device", "cpu,cpu", "--batch_size", "3"], "--batch_size 3 is the global batch of the 2 devices"),
    (["--device", "cpu,cpu", "--device_map", "auto"], "cannot be combined"),
    (["--device_map", "0,1"], "device_map '0,1', entry '0': this machine has 0 CUDA GPU(s)"),
    (["--device_map", "{mlp: 1}"], "--device_map '{mlp: 1}' is not valid JSON"),
    (["--device_map", '{"mlp": "tpu"}'], "device_map['mlp'] 'tpu' is not a device"),
])
def test_bad_device_flags_refused_before_loading(extra, message, base, tmp_path, monkeypatch, capsys):
    _no_gpus(monkeypatch)
    import transformers

    def no_model_loading(*a, **k):
        raise AssertionError("a model was loaded before validation finished")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_model_loading)
    assert main(base + ["--output_dir", str(tmp_path / "out")] + extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("ar: error:"), err


def _weights(path):
    from safetensors.torch import load_file
    out = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def test_data_parallel_cli_equals_one_process(base, tmp_path):
    # two CPU ranks with the global batch 4 == one process with batch 2 and 2 accumulation steps
    assert main(base + ["--device", "cpu,cpu", "--batch_size", "4", "--output_dir", str(tmp_path / "dp")]) == 0
    assert main(base + ["--batch_size", "2", "--gradient_accumulate_steps", "2",
                        "--output_dir", str(tmp_path / "one")]) == 0
    dp, one = _weights(tmp_path / "dp"), _weights(tmp_path / "one")
    assert dp.keys() == one.keys()
    assert [k for k in dp if not torch.equal(dp[k], one[k])] == []

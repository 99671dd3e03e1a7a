"""`ar quantize --avg_bits --options`: checked before any model loads, then end to end on a tiny model."""
import json

import pytest

from ar_cli.main import main

BAD = [
    (["--avg_bits", "3.0"], "--avg_bits and --options go together"),
    (["--options", "W2A16G64,W4A16"], "--avg_bits and --options go together"),
    (["--avg_bits", "3.0", "--options", "W2A16G64,W9A16"], "unknown scheme 'W9A16'"),
    (["--avg_bits", "1.5", "--options", "W2A16G64,W4A16"], "avg_bits=1.5 is outside what the options reach"),
    (["--avg_bits", "4.1", "--options", "W2A16G64,W4A16", "--ignore_scale_zp_bits"], "2 to 4 bits per weight"),
    (["--avg_bits", "3.0", "--options", "W2A16G64,W4A16", "--bits", "3"], "name each candidate in --options"),
    (["--avg_bits", "6.0", "--options", "W4A16,MXFP8"], "one packing format"),
    (["--avg_bits", "3.0", "--options", "W2A16G64,W4A16", "--format", "auto_awq"], "auto_awq"),
]


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a model was loaded before validation finished")
    import transformers
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)


@pytest.mark.parametrize("extra,message", BAD, ids=[" ".join(b[0])[:40] for b in BAD])
def test_bad_autoscheme_flags(extra, message, tiny_model_dir, tmp_path, no_loading, capsys):
    argv = ["quantize", "--model", str(tiny_model_dir), "--output_dir", str(tmp_path / "out"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("ar: error:"), err
    assert not (tmp_path / "out").exists()


def test_autoscheme_end_to_end(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "calib.txt"
    data.write_text(" ".join(f"t{(i * 7) % 250}" for i in range(3000)))
    fixed = tmp_path / "layers.json"
    fixed.write_text(json.dumps({"model.layers.0.mlp.down_proj": "W8A16"}))
    out = tmp_path / "q"
    rc = main(["quantize", "--model", str(tiny_model_dir), "--avg_bits", "3.6", "--options", "W2A16G64,W4A16",
               "--layer_config", str(fixed), "--iters", "0", "--disable_opt_rtn", "--seqlen", "32",
               "--dataset", str(data), "--format", "auto_round", "--output_dir", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "AutoScheme:" in text and "(target 3.6" in text
    cfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert cfg["bits"] == 2 and cfg["group_size"] == 64  # the first option is the default scheme
    extra = cfg["extra_config"]
    assert extra["model.layers.0.mlp.down_proj"]["bits"] == 8

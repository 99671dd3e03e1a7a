"""Bad input is refused with a one-line message naming the value and the choices, exit code 2,
before any model loads or any output is written."""
import json

import pytest

from ar_cli.main import main

BASE = ["quantize", "--model", "{model}", "--output_dir", "{out}"]

# (extra args, text the error must contain)
BAD = [
    (["--scheme", "W9A16"], "unknown scheme 'W9A16'"),
    (["--scheme", "W4A16", "--bits", "9"], "bits=9 is not valid"),
    (["--scheme", "MXFP4", "--bits", "3"], "bits=3 is not valid for data_type 'mx_fp'"),
    (["--group_size", "-5"], "group_size=-5"),
    (["--format", "onnx"], "unknown format 'onnx'"),
    (["--format", "auto_round,nope"], "unknown format 'nope'"),
    (["--format", ""], "no format given"),
    (["--format", "auto_awq", "--scheme", "W2A16"], "auto_awq"),
    (["--format", "auto_gptq", "--scheme", "MXFP4"], "auto_gptq"),
    (["--format", "auto_awq", "--scheme", "W8A16"], "auto_awq"),
    (["--iters", "-1"], "iters=-1"),
    (["--nsamples", "0"], "nsamples=0"),
    (["--seqlen", "0"], "seqlen=0"),
    (["--batch_size", "0"], "batch_size=0"),
    (["--gradient_accumulate_steps", "0"], "gradient_accumulate_steps=0"),
    (["--lr", "0"], "lr=0"),
    (["--lr", "-0.1"], "lr=-0.1"),
    (["--minmax_lr", "-1"], "minmax_lr=-1"),
    (["--layer_config", "{not json"], "--layer_config is neither valid JSON"),
    (["--layer_config", "[1, 2]"], "must be a JSON object"),
    (["--layer_config", json.dumps({"q_proj": "W9"})], "unknown scheme 'W9'"),
    (["--layer_config", json.dumps({"q_proj": {"bitz": 3}})], "unknown scheme field"),
    (["--layer_config", json.dumps({"q_proj": 5})], "must be a scheme name"),
    (["--dataset", "/no/such/file.txt"], "/no/such/file.txt"),
    (["--dataset", "{data}:num=abc"], "num"),
    (["--dataset", "{data}:bogus_option"], "bogus_option"),
    (["--dataset", "{data}", "--nsamples", "1000", "--seqlen", "64"], "1000"),
    (["--dataset", "no_such_dataset_name_xyz"], "no_such_dataset_name_xyz"),
]
BAD_MODEL = [
    (["quantize", "--model", "/no/such/model", "--output_dir", "{out}"], "no such directory"),
    (["quantize", "--model", "./relative/missing", "--output_dir", "{out}"], "no such directory"),
    (["quantize", "--model", "{data}", "--output_dir", "{out}"], "is a file"),
    (["quantize", "--model", "{model}", "--output_dir", "{model}"], "is the input model directory"),
]


@pytest.fixture
def env(tmp_path, monkeypatch, tiny_model_dir):
    data = tmp_path / "calib.txt"
    data.write_text(" ".join(f"t{i % 200}" for i in range(2000)))

    def no_model_loading(*a, **k):
        raise AssertionError("a model was loaded before validation finished")
    import transformers
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_model_loading)
    return {"model": str(tiny_model_dir), "out": str(tmp_path / "out"), "data": str(data)}


def _fmt(args, env):
    out = []
    for a in args:
        for k, v in env.items():
            a = a.replace("{" + k + "}", v)
        out.append(a)
    return out


@pytest.mark.parametrize("extra,message", BAD, ids=[" ".join(b[0])[:40] for b in BAD])
def test_bad_quantize_flags(extra, message, env, capsys):
    argv = _fmt(BASE, env) + _fmt(extra, env)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.startswith("ar: error:")
    assert not (env["out"] and __import__("os").path.exists(env["out"]))


@pytest.mark.parametrize("argv,message", BAD_MODEL)
def test_bad_model_or_output(argv, message, env, capsys):
    assert main(_fmt(argv, env)) == 2
    assert message in capsys.readouterr().err


def test_unknown_flag_is_argparse_error(env, capsys):
    with pytest.raises(SystemExit) as e:
        main(_fmt(BASE, env) + ["--no_such_flag"])
    assert e.value.code == 2


def test_bad_recipe(env, capsys):
    with pytest.raises(SystemExit) as e:
        main(_fmt(BASE, env) + ["--recipe", "fastest"])
    assert e.value.code == 2
    assert "fastest" in capsys.readouterr().err

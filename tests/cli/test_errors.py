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
    (["--device", "tpu"], "--device 'tpu' is not a device type"),
    (["--device", "cuda:7"] if __import__("torch").cuda.is_available() else ["--device", "cuda"],
     "--device 'cuda"),
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


def test_not_enough_disk_space(env, capsys, monkeypatch):
    import shutil
    from collections import namedtuple
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10, 10, 0))
    assert main(_fmt(BASE, env)) == 2
    assert "may be written (1 format(s)) but only 0.0 GiB are free" in capsys.readouterr().err


def test_api_bad_inputs_table():
    """The library refuses bad input with the value named too (no model is built for these)."""
    from ar_core import QuantizeError, QuantizeOptions
    from ar_schemes import SchemeError, get_scheme, resolve_layer_schemes
    cases = [
        (lambda: get_scheme("W4A17"), SchemeError, "unknown scheme 'W4A17'"),
        (lambda: get_scheme("W4A16", bits=1), SchemeError, "bits=1"),
        (lambda: get_scheme({"bitz": 4}), SchemeError, "unknown scheme field"),
        (lambda: resolve_layer_schemes(["a"], get_scheme("W4A16"), {"[": "W4A16"}), SchemeError, "not a valid regex"),
        (lambda: QuantizeOptions.build(iters=-3), QuantizeError, "iters=-3"),
        (lambda: QuantizeOptions.build(seqlen=0), QuantizeError, "seqlen=0"),
        (lambda: QuantizeOptions.build(resume=True), QuantizeError, "resume=True needs work_dir"),
        (lambda: QuantizeOptions.build(speed=9), QuantizeError, "unknown option"),
    ]
    for call, exc, message in cases:
        with pytest.raises(exc, match=__import__("re").escape(message)):
            call()

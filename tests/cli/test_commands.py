"""`ar list`, `ar --help`, and a tiny end-to-end `ar quantize`."""
import json

from ar_cli.main import main
from ar_schemes import PRESETS


def test_list_schemes_round_trips_every_preset(capsys):
    assert main(["list", "schemes"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert names == list(PRESETS)
    from ar_schemes import get_scheme
    for n in names:
        assert get_scheme(n) == PRESETS[n]


def test_list_formats(capsys):
    assert main(["list", "formats"]) == 0
    out = capsys.readouterr().out
    for f in ("auto_round", "auto_gptq", "auto_awq", "fake", "gguf"):
        assert f in out


def test_help(capsys):
    assert main([]) == 0
    assert "quantize" in capsys.readouterr().out


def test_quantize_tiny_end_to_end(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "calib.txt"
    data.write_text(" ".join(f"t{(i * 7) % 250}" for i in range(3000)))
    out = tmp_path / "q"
    rc = main(["quantize", "--model", str(tiny_model_dir), "--scheme", "W4A16", "--iters", "2", "--nsamples", "4",
               "--seqlen", "32", "--batch_size", "2", "--dataset", str(data), "--format", "fake,auto_round",
               "--output_dir", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "quantized 14 layers" in text and "peak memory" in text
    cfg = json.loads((out / "auto_round" / "config.json").read_text())
    assert cfg["quantization_config"]["quant_method"] == "auto-round"
    assert (out / "fake" / "config.json").exists()
    assert not (tmp_path / "q.ar-work").exists()


def test_quantize_with_dataset_mixture(tiny_model_dir, tmp_path, capsys):
    """`--dataset "<file.txt>,<file.jsonl>:num=4"` end to end."""
    (tmp_path / "a.txt").write_text(" ".join(f"t{(i * 7) % 250}" for i in range(4000)))
    rows = [json.dumps({"text": " ".join(f"t{(i * k + 3) % 250}" for i in range(40))}) for k in range(10)]
    (tmp_path / "b.jsonl").write_text("\n".join(rows) + "\n")
    spec = f"{tmp_path / 'a.txt'},{tmp_path / 'b.jsonl'}:num=4"
    rc = main(["quantize", "--model", str(tiny_model_dir), "--iters", "1", "--nsamples", "8", "--seqlen", "32",
               "--batch_size", "4", "--dataset", spec, "--format", "fake", "--output_dir", str(tmp_path / "q")])
    assert rc == 0
    assert "quantized 14 layers" in capsys.readouterr().out

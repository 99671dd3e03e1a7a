"""Same seed, same inputs, twice on the CPU: byte-identical checkpoint files (eager, and with the
compiled tuning step that long CPU runs use by default)."""
import hashlib

import pytest

from ar_cli.main import main


def _digests(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _run(model_dir, data, out, *extra):
    rc = main(["quantize", "--model", str(model_dir), "--scheme", "W2A16G64", "--iters", "6", "--nsamples", "4",
               "--seqlen", "32", "--batch_size", "2", "--dataset", str(data), "--format", "auto_round",
               "--output_dir", str(out), "--seed", "11", *extra])
    assert rc == 0
    return _digests(out)


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_same_seed_twice_gives_identical_checkpoints(tiny_model_dir, tmp_path, compiled):
    data = tmp_path / "calib.txt"
    data.write_text(" ".join(f"t{(i * 13) % 250}" for i in range(3000)))
    flag = "--enable_torch_compile" if compiled else "--disable_torch_compile"
    a = _run(tiny_model_dir, data, tmp_path / "a", flag)
    b = _run(tiny_model_dir, data, tmp_path / "b", flag)
    assert any(k.endswith(".safetensors") for k in a)
    assert a == b

"""kill -9 of `ar quantize` mid-run, then `--resume`: the checkpoint equals an uninterrupted run's."""
import json
import os
import signal
import subprocess
import sys
import time

from conftest import tiny_model, tiny_tokenizer


def _cmd(model, data, out, *extra):
    return [sys.executable, "-m", "ar_cli.main", "quantize", "--model", str(model), "--scheme", "W4A16",
            "--iters", "40", "--nsamples", "4", "--seqlen", "64", "--batch_size", "2", "--dataset", str(data),
            "--format", "fake", "--output_dir", str(out), *extra]


def _files(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}


def test_kill_9_after_block_2_then_resume_is_byte_identical(tmp_path):
    model = tmp_path / "tiny4"
    tiny_model("llama", layers=4).save_pretrained(model)
    tiny_tokenizer().save_pretrained(model)
    data = tmp_path / "calib.txt"
    data.write_text(" ".join(f"t{(i * 11) % 250}" for i in range(2000)))

    full = tmp_path / "full"
    subprocess.run(_cmd(model, data, full), check=True, capture_output=True, timeout=900)

    out = tmp_path / "resumed"
    progress = tmp_path / "resumed.ar-work" / "progress.json"
    proc = subprocess.Popen(_cmd(model, data, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None:
        if progress.exists() and json.loads(progress.read_text())["finished"] >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    assert not out.exists(), "a killed run must leave no output directory"

    r = subprocess.run(_cmd(model, data, out, "--resume"), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming after block" in r.stderr
    assert _files(out) == _files(full)

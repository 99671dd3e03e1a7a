"""save(): several formats in one call, sharding with an index, and atomic replacement that
survives a kill -9 mid-write."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_model, tiny_tokenizer

import ar_export

from .qmodels import quantize_model
from .readers import gptq_dequant, load_tensors

TESTS = Path(__file__).resolve().parents[1]


def test_several_formats_in_one_call(tmp_path):
    model = tiny_model("llama", hidden=128)
    qmodel = quantize_model(model, "W4A16")
    out = ar_export.save(qmodel, model, tiny_tokenizer(), tmp_path, formats="auto_round,auto_gptq")
    assert out == {"auto_round": tmp_path / "auto_round", "auto_gptq": tmp_path / "auto_gptq"}
    methods = {f: json.loads((d / "config.json").read_text())["quantization_config"]["quant_method"]
               for f, d in out.items()}
    assert methods == {"auto_round": "auto-round", "auto_gptq": "gptq"}
    for d in out.values():
        assert (d / "tokenizer.json").exists() and (d / "generation_config.json").exists()
        assert (d / "quantization_config.json").exists()


def test_sharded_with_index(tmp_path):
    model = tiny_model("llama", hidden=128)
    qmodel = quantize_model(model, "W4A16")
    ar_export.save(qmodel, model, None, tmp_path, "auto_gptq", max_shard_size="40KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    t = load_tensors(tmp_path)
    assert set(t) == set(index["weight_map"])
    assert index["metadata"]["total_size"] == sum(v.numel() * v.element_size() for v in t.values())
    name = "model.layers.1.mlp.down_proj"
    assert torch.equal(gptq_dequant(t, name, 4, 128), qmodel.layers[name].dequantize())
    # non-quantized weights come from the model, in its dtype
    assert torch.equal(t["model.embed_tokens.weight"], model.model.embed_tokens.weight)
    assert torch.equal(t["lm_head.weight"], model.lm_head.weight)


def test_bad_shard_size_names_the_value(tmp_path):
    model = tiny_model("llama", hidden=128)
    qmodel = quantize_model(model, "W4A16")
    with pytest.raises(ar_export.ExportError, match="max_shard_size='lots'"):
        ar_export.save(qmodel, model, None, tmp_path / "o", "auto_round", max_shard_size="lots")


_CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
from conftest import tiny_model
from export.qmodels import quantize_model
import ar_export
from ar_export.formats import safetensors_io

real = safetensors_io.save_file
def slow_save(tensors, path, metadata=None):
    real(tensors, path, metadata=metadata)
    open({flag!r}, "w").close()  # the parent kills us once a shard is on disk
    time.sleep(60)
safetensors_io.save_file = slow_save
model = tiny_model("llama", hidden=128)
ar_export.save(quantize_model(model, "W4A16"), model, None, {out!r}, "auto_round", max_shard_size="40KB")
"""


def test_kill_9_mid_write_keeps_the_old_output(tmp_path):
    out, flag = tmp_path / "ckpt", tmp_path / "started"
    out.mkdir()
    (out / "config.json").write_text('{"old": true}')
    code = _CHILD.format(tests=str(TESTS), flag=str(flag), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(TESTS)})
    deadline = time.time() + 120
    while not flag.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert flag.exists(), "the child never started writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]
    assert json.loads((out / "config.json").read_text()) == {"old": True}
    partial = [p for p in tmp_path.iterdir() if p.name.startswith(".ckpt.tmp-")]
    assert partial and any(p.suffix == ".safetensors" for p in partial[0].iterdir())  # the write was under way

"""hub.py: no network never hangs; the default falls back to the embedded corpus, loudly."""
from __future__ import annotations

import logging
import subprocess
import sys
import time
import types

import pytest

from ar_calib import DEFAULT_DATASET, CalibError, load_samples
from ar_calib import hub as hub_mod
from ar_calib import sources as sources_mod

from .util import chat_tokenizer, words

OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


@pytest.fixture
def no_hub(monkeypatch):
    """No offline variable, and the hub endpoint a closed local port: the probe is refused."""
    for var in OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")


def test_default_falls_back_to_the_embedded_corpus_with_a_warning(no_hub, tokenizer, caplog):
    t = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="ar"):
        got = load_samples(None, tokenizer, 4, 32, cache_dir=False)
    assert time.monotonic() - t < 30
    assert len(got) == 4 and all(s.shape == (32,) for s in got)
    (rec,) = [r for r in caplog.records if r.name == "ar" and r.levelno == logging.WARNING]
    assert "unreachable" in rec.getMessage() and "embedded WikiText-2" in rec.getMessage()
    assert DEFAULT_DATASET in rec.getMessage()


def test_offline_env_is_respected(monkeypatch, tokenizer, caplog):
    """Offline variables set: datasets may read its cache (not here), never the network."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    t = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="ar"):
        assert len(load_samples(f"{DEFAULT_DATASET}:num=2", tokenizer, 2, 16, cache_dir=False)) == 2
    assert "HF_DATASETS_OFFLINE is set" in caplog.text
    with pytest.raises(CalibError, match="cannot load hub dataset 'mbpp': the Hugging Face Hub is unreachable"):
        load_samples("mbpp", tokenizer, 2, 16, cache_dir=False)
    assert time.monotonic() - t < 30


def test_non_default_hub_name_without_network_is_a_clear_error(no_hub, tokenizer):
    t = time.monotonic()
    with pytest.raises(CalibError, match="swift/pile-val-backup.*unreachable.*HF_DATASETS_OFFLINE=1"):
        load_samples("swift/pile-val-backup", tokenizer, 2, 16, cache_dir=False)
    assert time.monotonic() - t < 30


def _hang(*args, **kwargs):
    time.sleep(3)
    raise OSError("timed out")


def test_probe_has_a_hard_deadline_even_when_connect_hangs(monkeypatch):
    for var in OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hub_mod.socket, "create_connection", _hang)
    t = time.monotonic()
    ok, why = hub_mod.hub_reachable(timeout=0.3)
    assert not ok and "did not answer within 0.3 s" in why
    assert time.monotonic() - t < 2


def test_hub_rows_through_datasets(monkeypatch, tokenizer):
    """With the hub 'reachable' and a stand-in datasets module: splits, columns and chat rows."""
    calls = []

    def load_dataset(hub_id, config, split, streaming):
        calls.append((hub_id, split, streaming))
        if hub_id == "mbpp":
            return [{"text": words(2, 30), "code": words(6, 40)}]
        return [{"messages": [{"role": "user", "content": words(5, 60)}]}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setattr(sources_mod, "hub_reachable", lambda: (True, ""))
    (s,) = load_samples("mbpp:split=test", tokenizer, 1, 8, cache_dir=False)
    assert s.tolist() == list(range(30, 32)) + list(range(40, 46))
    (c,) = load_samples("HuggingFaceH4/ultrachat_200k:apply_chat_template", chat_tokenizer(), 1, 6, cache_dir=False)
    assert c.tolist() == [4, 60, 61, 62, 63, 64]
    assert calls == [("mbpp", "test", False), ("HuggingFaceH4/ultrachat_200k", "train_sft", False)]


def test_import_is_lean():
    code = "import sys, ar_calib; print('datasets' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_a_failing_hub_load_names_the_dataset(monkeypatch, tokenizer):
    def load_dataset(*args, **kwargs):
        raise FileNotFoundError("no such split")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setattr(sources_mod, "hub_reachable", lambda: (True, ""))
    with pytest.raises(CalibError, match="could not load hub dataset 'mbpp' split 'nope': FileNotFoundError"):
        load_samples("mbpp:split=nope", tokenizer, 1, 8, cache_dir=False)

"""cache.py: a second run reads the disk cache; any change of content, tokenizer or size misses."""
from __future__ import annotations

import pytest

from ar_calib import load_samples
from ar_calib import loader as loader_mod

from .util import bos_tokenizer, words


@pytest.fixture
def txt(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text(words(64))
    return path


def _no_draw(*args, **kwargs):
    raise AssertionError("loaded and tokenized again instead of reading the cache")


def test_second_run_reads_the_cache(txt, tmp_path, tokenizer, monkeypatch):
    cache = tmp_path / "cache"
    first = load_samples(str(txt), tokenizer, 4, 8, cache_dir=cache)
    assert len(list(cache.glob("*.pt"))) == 1
    monkeypatch.setattr(loader_mod, "draw", _no_draw)
    again = load_samples(str(txt), tokenizer, 4, 8, cache_dir=cache)
    assert [s.tolist() for s in again] == [s.tolist() for s in first]


@pytest.mark.parametrize("change", ["content", "tokenizer", "seqlen", "seed", "options"])
def test_any_change_misses(txt, tmp_path, tokenizer, change):
    cache = tmp_path / "cache"
    load_samples(str(txt), tokenizer, 4, 8, cache_dir=cache)
    args = dict(spec_or_data=str(txt), tokenizer=tokenizer, nsamples=4, seqlen=8, seed=42, cache_dir=cache)
    if change == "content":
        txt.write_text(words(64, 40))
    elif change == "tokenizer":
        args["tokenizer"] = bos_tokenizer()
    elif change == "seqlen":
        args["seqlen"] = 4
    elif change == "seed":
        args["seed"] = 1
    else:
        args["spec_or_data"] = f"{txt}:concat"
    load_samples(**args)
    assert len(list(cache.glob("*.pt"))) == 2


def test_broken_entry_is_rebuilt_and_false_disables(txt, tmp_path, tokenizer, monkeypatch):
    cache = tmp_path / "cache"
    first = load_samples(str(txt), tokenizer, 2, 8, cache_dir=cache)
    (entry,) = cache.glob("*.pt")
    entry.write_bytes(b"not a tensor file")
    assert [s.tolist() for s in load_samples(str(txt), tokenizer, 2, 8, cache_dir=cache)] == [s.tolist() for s in first]
    off = tmp_path / "off"
    monkeypatch.setenv("AR_CACHE_DIR", str(off))
    load_samples(str(txt), tokenizer, 2, 8, cache_dir=False)
    assert not off.exists()


def test_in_memory_data_is_never_cached(tmp_path, tokenizer, monkeypatch):
    monkeypatch.setenv("AR_CACHE_DIR", str(tmp_path / "home"))
    load_samples([words(8)], tokenizer, 1, 8)
    assert not (tmp_path / "home").exists()
    load_samples(str(_write(tmp_path)), tokenizer, 1, 8)  # a spec: cached in the default place
    assert len(list((tmp_path / "home" / "calib").glob("*.pt"))) == 1


def _write(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text(words(8))
    return path

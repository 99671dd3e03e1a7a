"""The library half of `ar quantize --dataset "<file.txt>,<file.jsonl>:num=4"`, end to end."""
from __future__ import annotations

from ar_calib import load_samples, validate_dataset_spec

from .util import words, write_jsonl


def test_txt_plus_jsonl_with_num(tmp_path, tokenizer):
    txt = tmp_path / "calib.txt"
    txt.write_text(words(60, 30) + "\n")  # ids 30..89: 7 windows of 8
    jsonl = write_jsonl(tmp_path / "chats.jsonl", [{"input_ids": [90 + k] * 10} for k in range(6)] + ["t1 t1"])
    spec = f"{txt},{jsonl}:num=4"
    assert [e.num for e in validate_dataset_spec(spec)] == [None, 4]  # what the CLI checks before the model loads
    got = load_samples(spec, tokenizer, nsamples=10, seqlen=8, seed=42, cache_dir=tmp_path / "cache")
    assert len(got) == 10 and all(s.shape == (8,) for s in got)
    from_jsonl = [s for s in got if s[0] >= 90]
    from_txt = sorted(s.tolist() for s in got if s[0] < 90)
    assert len(from_jsonl) == 4 and all(len(set(s.tolist())) == 1 for s in from_jsonl)
    assert from_txt == [list(range(30 + 8 * i, 38 + 8 * i)) for i in range(6)]  # the first 6 windows, in order
    again = load_samples(spec, tokenizer, nsamples=10, seqlen=8, seed=42, cache_dir=False)
    assert [s.tolist() for s in again] == [s.tolist() for s in got]  # cache and fresh runs agree

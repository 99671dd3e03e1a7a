"""sampling.py: short samples dropped or packed, num= shares, determinism, counts in errors."""
from __future__ import annotations

import pytest

from ar_calib import CalibError, DatasetEntry, load_samples

from .util import words, write_jsonl

SEQ = 8


def _ids(samples):
    return [s.tolist() for s in samples]


@pytest.fixture
def two_files(tmp_path):
    """a.jsonl: 6 texts of 8+ words starting 30..35; b.jsonl: 6 token-id rows starting 100.."""
    a = write_jsonl(tmp_path / "a.jsonl", [words(SEQ + k, 30 + k) for k in range(6)] + [words(3)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"input_ids": list(range(100 + 10 * k, 110 + 10 * k))} for k in range(6)])
    return a, b


def test_short_samples_dropped_long_ones_cut(two_files, tokenizer):
    a, _ = two_files
    got = load_samples(str(a), tokenizer, 6, SEQ, cache_dir=False)
    assert sorted(s[0].item() for s in got) == [30, 31, 32, 33, 34, 35]
    with pytest.raises(CalibError, match="found 6 samples of 8 tokens, nsamples=7 asked"):
        load_samples(str(a), tokenizer, 7, SEQ, cache_dir=False)


def test_concat_packs_short_texts_into_full_windows(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "short.jsonl", [words(3, 30 + 3 * k) for k in range(8)])  # 8 x 3 words
    with pytest.raises(CalibError, match="add ':concat' to pack short texts"):
        load_samples(str(path), tokenizer, 2, SEQ, cache_dir=False)
    got = load_samples(f"{path}:concat", tokenizer, 3, SEQ, cache_dir=False)
    flat = [t for s in got for t in s.tolist()]
    eos = tokenizer.eos_token_id
    assert flat.count(eos) == 6  # 8 records joined by EOS: 31 tokens -> 3 full windows hold 6 of the 7 EOS
    assert sorted(t for t in flat if t != eos) == sorted(set(t for t in flat if t != eos))  # nothing repeated


def test_num_counts_first_rest_shared_equally(two_files, tokenizer):
    a, b = two_files
    got = load_samples(f"{a},{b}:num=4", tokenizer, 6, SEQ, cache_dir=False)
    firsts = [s[0].item() for s in got]
    assert sum(f >= 100 for f in firsts) == 4 and sum(f < 100 for f in firsts) == 2
    got = load_samples(f"{a},{b}", tokenizer, 5, SEQ, cache_dir=False)  # 3 + 2: the first entry gets the extra one
    assert sum(s[0].item() < 100 for s in got) == 3


def test_an_entry_that_runs_short_is_topped_up_by_the_others(two_files, tmp_path, tokenizer):
    a, b = two_files
    small = write_jsonl(tmp_path / "small.jsonl", [words(SEQ, 90)])
    got = load_samples(f"{small},{a},{b}", tokenizer, 9, SEQ, cache_dir=False)  # shares 3/3/3; small has 1
    firsts = [s[0].item() for s in got]
    assert firsts.count(90) == 1 and len(firsts) == 9 and len(set(map(tuple, _ids(got)))) == 9


def test_deterministic_under_a_seed(two_files, tokenizer):
    a, b = two_files
    spec = f"{a},{b}:num=3"
    one = _ids(load_samples(spec, tokenizer, 6, SEQ, seed=7, cache_dir=False))
    assert one == _ids(load_samples(spec, tokenizer, 6, SEQ, seed=7, cache_dir=False))
    others = {tuple(map(tuple, _ids(load_samples(spec, tokenizer, 6, SEQ, seed=s, cache_dir=False))))
              for s in range(8, 12)}
    assert len(others | {tuple(map(tuple, one))}) > 1  # the seed does shuffle


def test_same_file_twice_gives_different_samples(two_files, tokenizer):
    a, _ = two_files
    got = load_samples([DatasetEntry(str(a), num=3), DatasetEntry(str(a), num=3)], tokenizer, 6, SEQ, cache_dir=False)
    assert len({tuple(x) for x in _ids(got)}) >= 4


@pytest.mark.parametrize("spec, n, needle", [
    ("{a}:num=4,{b}:num=4", 6, "the num= counts add up to 8, more than nsamples=6"),
    ("{a}:num=2,{b}:num=2", 6, "the num= counts add up to 4, fewer than nsamples=6"),
    ("{a},{b}:num=6", 6, None),
])
def test_num_sums_are_checked(two_files, tokenizer, spec, n, needle):
    a, b = two_files
    call = lambda: load_samples(spec.format(a=a, b=b), tokenizer, n, SEQ, cache_dir=False)  # noqa: E731
    if needle is None:
        assert len(call()) == n  # the entry without num= gets 0 samples and is never read
        return
    with pytest.raises(CalibError) as ei:
        call()
    assert needle in str(ei.value)


def test_too_small_error_is_one_line_with_counts(two_files, tokenizer):
    a, b = two_files
    with pytest.raises(CalibError) as ei:
        load_samples(f"{a},{b}:num=5", tokenizer, 16, SEQ, cache_dir=False)
    msg = str(ei.value)
    assert "\n" not in msg
    assert "found 11 samples of 8 tokens, nsamples=16 asked" in msg
    assert "a.jsonl' has only 6" in msg and "b.jsonl' gave 5 (num=5)" in msg


def test_a_num_entry_that_is_short_fails(two_files, tokenizer):
    a, b = two_files
    with pytest.raises(CalibError, match=r"b.jsonl' has only 6 \(num=7\)"):
        load_samples(f"{a},{b}:num=7", tokenizer, 8, SEQ, cache_dir=False)


@pytest.mark.parametrize("n, seqlen", [(0, 8), (4, 0), (2.5, 8), (4, True)])
def test_sizes_are_validated(tokenizer, n, seqlen):
    with pytest.raises(CalibError, match="must be a positive integer"):
        load_samples(["t30"], tokenizer, n, seqlen)

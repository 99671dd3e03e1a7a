"""sources.py / records.py: every source kind gives full windows; bad sources say what is wrong."""
from __future__ import annotations

import json

import pytest
import torch

from ar_calib import CalibError, load_samples, register_dataset, unregister_dataset, validate_dataset_spec

from .util import bos_tokenizer, words, write_jsonl

SEQ = 8


def _ids(samples):
    return [s.tolist() for s in samples]


def _check(samples, n, seqlen=SEQ):
    assert len(samples) == n
    for s in samples:
        assert s.dtype == torch.long and s.shape == (seqlen,)


def test_txt_is_exactly_the_benchmark_windows(tmp_path):
    """compare.py gives the reference ids[i*seqlen:(i+1)*seqlen], i < nsamples: same ids, same order."""
    tok = bos_tokenizer()
    path = tmp_path / "calib.txt"
    path.write_text(words(50) + "\n" + words(30, start=100) + "\n", encoding="utf-8")
    ids = tok(open(path, encoding="utf-8").read(), return_tensors="pt").input_ids[0]
    expected = [ids[i * SEQ:(i + 1) * SEQ] for i in range(9)]
    got = load_samples(str(path), tok, nsamples=9, seqlen=SEQ, seed=123, cache_dir=False)
    assert got[0][0].item() == 2  # BOS: tokenized with special tokens, as the benchmark does
    assert _ids(got) == _ids(expected)


def test_embedded_corpus_path_is_a_txt(tmp_path, tokenizer):
    from ar_calib import embedded_corpus_path
    path = embedded_corpus_path()
    assert path.is_file() and (path.parent / "ATTRIBUTION.md").is_file()
    assert "CC BY-SA 3.0" in (path.parent / "ATTRIBUTION.md").read_text()
    _check(load_samples(path, tokenizer, 4, 64, cache_dir=False), 4, 64)


def test_json_array_of_strings_and_text_objects(tmp_path, tokenizer):
    (tmp_path / "a.json").write_text(json.dumps([words(10, 30), {"text": words(12, 50)}, words(3)]))
    got = load_samples(str(tmp_path / "a.json"), tokenizer, 2, SEQ, cache_dir=False)
    assert sorted(_ids(got)) == [list(range(30, 38)), list(range(50, 58))]  # the short one is dropped


def test_json_object_holding_one_list(tmp_path, tokenizer):
    (tmp_path / "a.json").write_text(json.dumps({"data": [words(9, 40)]}))
    assert _ids(load_samples(str(tmp_path / "a.json"), tokenizer, 1, SEQ, cache_dir=False)) == [list(range(40, 48))]


def test_jsonl_token_ids_text_and_tensors(tmp_path, tokenizer):
    write_jsonl(tmp_path / "b.jsonl", [{"input_ids": list(range(50, 60))}, list(range(60, 70)), {"text": words(8, 70)}])
    got = load_samples(str(tmp_path / "b.jsonl"), tokenizer, 3, SEQ, cache_dir=False)
    assert sorted(_ids(got)) == [list(range(s, s + SEQ)) for s in (50, 60, 70)]


def test_parquet_file(tmp_path, tokenizer):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"text": [words(8, 31), words(9, 43), "t1"]}), tmp_path / "c.parquet")
    got = load_samples(str(tmp_path / "c.parquet"), tokenizer, 2, SEQ, cache_dir=False)
    assert sorted(_ids(got)) == [list(range(31, 39)), list(range(43, 51))]


def test_directory_with_split_filter(tmp_path, tokenizer):
    write_jsonl(tmp_path / "train-00000-of-00001.jsonl", [words(8, 30)])
    (tmp_path / "validation").mkdir()
    write_jsonl(tmp_path / "validation" / "part.jsonl", [words(8, 60)])
    write_jsonl(tmp_path / ".hidden.jsonl", [words(8, 80)])
    assert len(load_samples(str(tmp_path), tokenizer, 2, SEQ, cache_dir=False)) == 2
    got = load_samples(f"{tmp_path}:split=validation", tokenizer, 1, SEQ, cache_dir=False)
    assert _ids(got) == [list(range(60, 68))]
    with pytest.raises(CalibError, match="no .* files for split=test"):
        load_samples(f"{tmp_path}:split=test", tokenizer, 1, SEQ, cache_dir=False)


def test_directory_of_txt_is_one_stream_in_path_order(tmp_path, tokenizer):
    (tmp_path / "b.txt").write_text(words(5, 50))
    (tmp_path / "a.txt").write_text(words(5, 30))
    got = load_samples(str(tmp_path), tokenizer, 1, 11, cache_dir=False)
    assert _ids(got) == [list(range(30, 35)) + [tokenizer.eos_token_id] + list(range(50, 55))]


def test_in_memory_strings_token_lists_and_tensors(tokenizer):
    assert _ids(load_samples([words(3), words(9, 42)], tokenizer, 1, SEQ)) == [list(range(42, 50))]
    ids = [list(range(i, i + 10)) for i in (10, 30)]
    assert _ids(load_samples(ids, None, 2, SEQ)) == [ids[0][:SEQ], ids[1][:SEQ]]  # order kept, no tokenizer needed
    rows = [torch.arange(5, 5 + SEQ).unsqueeze(0), torch.arange(40, 40 + SEQ)]
    assert _ids(load_samples(rows, None, 2, SEQ)) == [list(range(5, 13)), list(range(40, 48))]
    assert len(load_samples(torch.arange(64).view(4, 16), None, 4, SEQ)) == 4


def test_dataloader_of_tensors_and_padded_dicts():
    from torch.utils.data import DataLoader
    data = torch.arange(6 * 10).view(6, 10)
    _check(load_samples(DataLoader(data, batch_size=4), None, 6, SEQ), 6)
    padded = [{"input_ids": torch.arange(10), "attention_mask": torch.tensor([1] * 9 + [0])},
              {"input_ids": torch.arange(10), "attention_mask": torch.tensor([1] * 7 + [0] * 3)}]
    got = load_samples(DataLoader(padded, batch_size=2), None, 1, 9)
    assert _ids(got) == [list(range(9))]  # padding removed, so the second row (7 tokens) is too short


def test_registered_dataset_with_one_decorated_function(tokenizer):
    @register_dataset("my-notes", description="notes")
    def my_notes(splits=None):
        base = 60 if splits == ("b",) else 30
        return [words(SEQ, base), words(SEQ, base + 20)]

    @register_dataset("my-flat")
    def my_flat():
        return [list(range(SEQ))]

    try:
        assert sorted(_ids(load_samples("my-notes", tokenizer, 2, SEQ, cache_dir=False)))[0] == list(range(30, 38))
        got = load_samples("my-notes:split=b", tokenizer, 2, SEQ, cache_dir=False)
        assert sorted(_ids(got))[0] == list(range(60, 68))
        assert _ids(load_samples("my-flat", None, 1, SEQ, cache_dir=False)) == [list(range(SEQ))]
        with pytest.raises(CalibError, match="already registered"):
            register_dataset("my-notes")(my_notes)
        with pytest.raises(CalibError, match="has no splits"):
            load_samples("my-flat:split=x", None, 1, SEQ, cache_dir=False)
    finally:
        unregister_dataset("my-notes")
        unregister_dataset("my-flat")


@pytest.mark.parametrize("spec, needle", [
    ("no-such-dataset", "unknown dataset 'no-such-dataset'; valid choices: NeelNanda/pile-10k"),
    ("missing.jsonl", "does not exist"),
    ("./nowhere/data", "does not exist"),
])
def test_unknown_names_and_missing_files(spec, needle):
    with pytest.raises(CalibError) as ei:
        validate_dataset_spec(spec)
    assert needle in str(ei.value)


def test_validate_checks_options_against_the_source(tmp_path):
    txt = tmp_path / "a.txt"
    txt.write_text(words(20))
    (tmp_path / "a.csv").write_text("x")
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "a.txt").write_text("t1")
    write_jsonl(tmp_path / "mixed" / "b.jsonl", ["t1"])
    assert [e.num for e in validate_dataset_spec(f"{txt},NeelNanda/pile-10k:num=3")] == [None, 3]
    for spec, needle in [(f"{txt}:split=train", "cannot apply to the file"),
                         (f"{txt}:apply_chat_template", "chat template cannot apply"),
                         (str(tmp_path / "a.csv"), "supported: .txt, .json, .jsonl, .parquet"),
                         (str(tmp_path / "mixed"), "mixes .txt streams"),
                         (f"{txt},nope", "entry 2 ('nope')")]:
        with pytest.raises(CalibError) as ei:
            validate_dataset_spec(spec)
        assert needle in str(ei.value), spec


def test_bad_items_name_the_file_and_line(tmp_path, tokenizer):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('"t1 t2"\n{"txt": "t3"}\n')
    with pytest.raises(CalibError, match=r"bad.jsonl line 2: an object with keys \['txt'\] has none of"):
        load_samples(str(bad), tokenizer, 1, SEQ, cache_dir=False)
    bad.write_text('"t1"\n{oops\n')
    with pytest.raises(CalibError, match="bad.jsonl line 2 is not valid JSON"):
        load_samples(str(bad), tokenizer, 1, SEQ, cache_dir=False)
    (tmp_path / "m.jsonl").write_text(json.dumps({"messages": [{"role": "user"}]}))
    with pytest.raises(CalibError, match="'messages' must be a non-empty list"):
        load_samples(str(tmp_path / "m.jsonl"), tokenizer, 1, SEQ, cache_dir=False)
    with pytest.raises(CalibError, match="a tokenizer is needed"):
        load_samples(["t1 t2"], None, 1, 2)
    with pytest.raises(CalibError, match="cannot read float"):
        load_samples([1.5], None, 1, 2)

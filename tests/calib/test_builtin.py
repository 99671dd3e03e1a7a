"""The shipped calibration dataset works offline by name."""
import torch
from conftest import tiny_tokenizer

import ar_calib


def test_wikitext2_calib_by_name_is_the_embedded_stream():
    tok = tiny_tokenizer()
    samples = ar_calib.load_samples("wikitext2_calib", tok, nsamples=3, seqlen=64, cache_dir=False)
    text = ar_calib.embedded_corpus_path().read_text(encoding="utf-8")
    ids = tok(text, return_tensors="pt").input_ids[0]
    assert len(samples) == 3
    assert torch.equal(samples[0], ids[:64]) and torch.equal(samples[1], ids[64:128])
    assert "wikitext2_calib" in ar_calib.registered_datasets()

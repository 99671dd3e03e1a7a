"""perplexity(): the benchmark script's recipe, checked against a hand computation."""
from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from conftest import SHARED, tiny_model, tiny_tokenizer

from ar_eval import EvalError, PerplexityResult, load_text, perplexity

# a text over the tiny word-level vocabulary t0..t255, several windows of 16 tokens long
TEXT = " ".join(f"t{(i * 37) % 256}" for i in range(7 * 16 + 5))


def hand_ppl(model, ids: torch.Tensor, seqlen: int, n: int) -> float:
    """exp(mean next-token NLL) over windows, from raw logits: no labels= shortcut."""
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(n):
            x = ids[i * seqlen:(i + 1) * seqlen].unsqueeze(0)
            logp = torch.log_softmax(model(x).logits[0, :-1].double(), dim=-1)  # (seqlen-1, vocab)
            total -= logp.gather(1, x[0, 1:, None]).sum().item()
            count += seqlen - 1
    return math.exp(total / count)


def test_matches_hand_computation():
    model, tok = tiny_model("llama"), tiny_tokenizer()
    res = perplexity(model, tok, TEXT, seqlen=16, windows=5)
    ids = tok(TEXT, return_tensors="pt").input_ids[0]
    assert isinstance(res, PerplexityResult)
    assert (res.windows, res.tokens, res.seqlen, res.text_tokens) == (5, 80, 16, ids.numel())
    assert res.ppl == pytest.approx(hand_ppl(model, ids, 16, 5), rel=1e-5)


def test_all_windows_by_default_and_capped():
    model, tok = tiny_model("gpt2"), tiny_tokenizer()
    full = tok(TEXT, return_tensors="pt").input_ids.shape[1] // 16
    assert full >= 6
    assert perplexity(model, tok, TEXT, seqlen=16).windows == full
    assert perplexity(model, tok, TEXT, seqlen=16, windows=100).windows == full


def test_same_as_benchmark_script(tmp_path):
    script = SHARED / "bench" / "ppl.py"
    if not script.is_file():
        pytest.skip("shared/bench/ppl.py not present")
    spec = importlib.util.spec_from_file_location("bench_ppl", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model, tok = tiny_model("qwen3"), tiny_tokenizer()
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    ours = perplexity(model, tok, path, seqlen=16, windows=6)
    theirs, n = bench.ppl(model, tok, TEXT, seqlen=16, windows=6)
    assert (ours.windows, ours.source) == (n, str(path))
    assert ours.ppl == theirs  # same recipe, same floats


def test_errors_name_the_bad_value(tmp_path):
    model, tok = tiny_model("llama"), tiny_tokenizer()
    with pytest.raises(EvalError, match="fewer than one window"):
        perplexity(model, tok, "t1 t2 t3", seqlen=16)
    with pytest.raises(EvalError, match="seqlen=1"):
        perplexity(model, tok, TEXT, seqlen=1)
    with pytest.raises(EvalError, match="valid choices: wikitext2"):
        load_text("no_such_file.txt")
    with pytest.raises(EvalError, match="does not exist"):
        load_text(tmp_path / "missing.txt")

"""Gemma-3-270M: perplexity equals the benchmark script's; the shipped task gives an accuracy."""
from __future__ import annotations

import importlib.util

import pytest
from conftest import DATA_DIR, SHARED

from ar_eval import evaluate, load_model, perplexity

pytestmark = pytest.mark.slow
TEXT = DATA_DIR / "wikitext2_eval.txt"


@pytest.fixture(scope="module")
def gemma(gemma_path):
    if not TEXT.is_file():
        pytest.skip(f"{TEXT} not present")
    return load_model(gemma_path, device="cpu")  # float32 on CPU, as the benchmark script loads


def test_perplexity_equals_benchmark_script(gemma):
    spec = importlib.util.spec_from_file_location("bench_ppl", SHARED / "bench" / "ppl.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model, tok = gemma
    ours = perplexity(model, tok, TEXT, seqlen=512, windows=2)
    theirs, n = bench.ppl(model, tok, TEXT.read_text(encoding="utf-8"), seqlen=512, windows=2)
    assert ours.windows == n == 2 and ours.tokens == 1024
    assert ours.ppl == pytest.approx(theirs, rel=1e-6)
    assert 5 < ours.ppl < 500


def test_shipped_task_gives_an_accuracy(gemma):
    pytest.importorskip("lm_eval")
    model, tok = gemma
    res = evaluate(model, tok, "wikitext2_lastword", batch_size=4, limit=8)
    assert 0.0 <= res["results"]["wikitext2_lastword"]["acc,none"] <= 1.0

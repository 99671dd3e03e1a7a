"""Reports: table, JSON round trip, comparison with deltas."""
from __future__ import annotations

import re

import pytest

from ar_eval import (
    EvalError,
    PerplexityResult,
    compare_results,
    format_comparison,
    format_table,
    load_report,
    make_report,
    metrics,
    save_report,
)


def _report(name: str, ppl: float, acc: float, failed: dict | None = None) -> dict:
    lm = {"results": {"wikitext2_lastword": {"alias": "wikitext2_lastword", "sample_len": 300, "acc,none": acc,
                                             "acc_stderr,none": 0.01, "perplexity,none": 20.0}},
          "failed": failed or {}}
    return make_report(name, PerplexityResult(ppl, 20, 10240, 512, 300000, "data/wikitext2_eval.txt"), lm)


def test_metrics_and_table():
    rep = _report("fp", 61.47, 0.40, failed={"piqa": "RuntimeError: boom"})
    m = metrics(rep)
    assert m[("ppl:wikitext2_eval.txt", "ppl@512x20")] == (61.47, None)
    assert m[("wikitext2_lastword", "acc")] == (0.40, 0.01) and len(m) == 3  # no sample_len
    table = format_table(rep)
    assert re.search(r"\| wikitext2_lastword\s+\| acc\s+\| 0\.4000\s+\| 0\.0100", table)
    assert "20 windows x 512 tokens = 10240 tokens" in table and "FAILED piqa: RuntimeError: boom" in table


def test_save_load_round_trip(tmp_path):
    rep = _report("out/W4A16", 62.0, 0.38)
    path = save_report(rep, tmp_path)
    assert path.name == "eval_W4A16.json"
    assert load_report(path) == rep and load_report(tmp_path) == rep
    with pytest.raises(EvalError, match="no evaluation report"):
        load_report(tmp_path / "nope.json")


def test_compare_puts_deltas_side_by_side():
    rows = compare_results(_report("fp", 60.0, 0.40), _report("q", 63.0, 0.36))
    by = {(r.task, r.metric): r for r in rows}
    ppl = by[("ppl:wikitext2_eval.txt", "ppl@512x20")]
    assert (ppl.a, ppl.b, ppl.delta) == (60.0, 63.0, 3.0) and ppl.rel == pytest.approx(0.05)
    assert by[("wikitext2_lastword", "acc")].delta == pytest.approx(-0.04)
    text = format_comparison(rows, "fp", "q")
    assert "| fp " in text and "+5.00%" in text and "-10.00%" in text

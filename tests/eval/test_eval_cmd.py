"""`ar eval`: flags, the report on disk, the printed table, --compare."""
from __future__ import annotations

import argparse
import json
import re

import pytest
from conftest import tiny_model, tiny_tokenizer

from ar_cli import eval_cmd

TEXT = " ".join(f"t{(i * 11) % 256}" for i in range(200))


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ar")
    eval_cmd.add_parser(p.add_subparsers(dest="command"))
    return p.parse_args(["eval", *argv])


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "tiny-gpt2"
    tiny_model("gpt2").save_pretrained(d)
    tiny_tokenizer().save_pretrained(d)
    (tmp_path / "text.txt").write_text(TEXT)
    return d


def test_perplexity_report_and_compare(model_dir, tmp_path, capsys):
    out, text = tmp_path / "res", str(tmp_path / "text.txt")
    args = _parse([str(model_dir), "--ppl_text", text, "--seqlen", "32", "--windows", "3", "--output_dir", str(out)])
    assert eval_cmd.run(args) == 0
    report = json.loads((out / "eval_tiny-gpt2.json").read_text())
    assert report["perplexity"]["windows"] == 3 and report["perplexity"]["tokens"] == 96
    printed = capsys.readouterr().out
    assert "ppl@32x3" in printed and "3 windows x 32 tokens = 96 tokens" in printed
    args = _parse(["--compare", str(out / "eval_tiny-gpt2.json"), str(model_dir), "--ppl_text", text,
                   "--seqlen", "32", "--windows", "3", "--output_dir", str(tmp_path / "cmp")])
    assert eval_cmd.run(args) == 0
    rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())["rows"]
    assert rows[0]["delta"] == pytest.approx(0.0)  # same model, same windows


def test_tasks_through_the_cli(model_dir, tmp_path, capsys):
    pytest.importorskip("lm_eval")
    args = _parse(["--model", str(model_dir), "--ppl_text", "none", "--tasks", "wikitext2_lastword",
                   "--limit", "2", "--eval_bs", "2", "--eval_task_by_task", "--output_dir", str(tmp_path)])
    assert eval_cmd.run(args) == 0
    assert re.search(r"\| wikitext2_lastword\s+\| acc", capsys.readouterr().out)


def test_flag_errors():
    with pytest.raises(SystemExit, match="--eval_bs 'big'"):
        eval_cmd.lm_eval_options(_parse(["m", "--eval_bs", "big"]))
    with pytest.raises(SystemExit, match="--limit 'x'"):
        eval_cmd.lm_eval_options(_parse(["m", "--limit", "x"]))
    opts = eval_cmd.lm_eval_options(_parse(["m", "--eval_bs", "16", "--limit", "0.5"]))
    assert opts["batch_size"] == 16 and opts["limit"] == 0.5
    with pytest.raises(SystemExit, match="nothing to do"):
        eval_cmd.run(_parse(["m", "--ppl_text", "none"]))

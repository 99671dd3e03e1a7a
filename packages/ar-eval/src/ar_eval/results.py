"""Evaluation reports: build, flatten, print as a table, save as JSON, compare two.

A report is a plain JSON-ready dict so that ``ar eval --compare`` can read back what an
earlier run wrote:
``{"model": str, "perplexity": PerplexityResult dict | None, "lm_eval": evaluate() output | None}``.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .__about__ import __version__
from .errors import EvalError
from .perplexity import PerplexityResult

REPORT_VERSION = 1


@dataclass(frozen=True)
class Comparison:
    """One metric of two models: ``delta = b - a``; ``rel`` is the delta relative to ``a``."""

    task: str
    metric: str
    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def rel(self) -> float | None:
        d = self.delta
        return None if d is None or not self.a else d / abs(self.a)


def make_report(model: str, ppl: PerplexityResult | None = None,
                lm_eval: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-ready report of one model's evaluation."""
    return {"version": REPORT_VERSION, "ar_eval": __version__, "model": model,
            "perplexity": ppl.to_dict() if ppl is not None else None, "lm_eval": lm_eval}


def metrics(report: dict[str, Any]) -> dict[tuple[str, str], tuple[float, float | None]]:
    """``{(task, metric): (value, stderr)}``: perplexity first, then every lm-eval number."""
    out: dict[tuple[str, str], tuple[float, float | None]] = {}
    ppl = report.get("perplexity")
    if ppl:
        name = Path(ppl.get("source") or "text").name
        out[(f"ppl:{name}", f"ppl@{ppl['seqlen']}x{ppl['windows']}")] = (ppl["ppl"], None)
    for task, values in ((report.get("lm_eval") or {}).get("results") or {}).items():
        for key, value in values.items():
            metric, comma, filt = key.partition(",")  # lm-eval keys are "metric,filter"
            if not comma or "_stderr" in metric or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            label = metric if filt == "none" else key
            stderr = values.get(f"{metric}_stderr,{filt}")
            out[(task, label)] = (float(value), stderr if isinstance(stderr, (int, float)) else None)
    return out


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def format_table(report: dict[str, Any]) -> str:
    """A Markdown-style table of every metric, with stderr, windows and tokens for perplexity."""
    rows = [[task, metric, _fmt(v), _fmt(se)] for (task, metric), (v, se) in metrics(report).items()]
    text = _table(["task", "metric", "value", "stderr"], rows) if rows else "(no metrics)"
    ppl = report.get("perplexity")
    if ppl:
        text += f"\nperplexity: {ppl['windows']} windows x {ppl['seqlen']} tokens = {ppl['tokens']} tokens " \
                f"(text has {ppl['text_tokens']}) from {ppl['source']}"
    failed = (report.get("lm_eval") or {}).get("failed") or {}
    text += "".join(f"\nFAILED {task}: {err}" for task, err in failed.items())
    return text


def compare_results(a: dict[str, Any], b: dict[str, Any]) -> list[Comparison]:
    """Every metric either report has, paired by (task, metric); missing sides are None."""
    ma, mb = metrics(a), metrics(b)
    keys = list(ma) + [k for k in mb if k not in ma]
    return [Comparison(t, m, ma.get((t, m), (None,))[0], mb.get((t, m), (None,))[0]) for t, m in keys]


def format_comparison(rows: list[Comparison], name_a: str = "A", name_b: str = "B") -> str:
    """Two models side by side with the absolute and relative delta (B - A)."""
    body = [[r.task, r.metric, _fmt(r.a), _fmt(r.b), _fmt(r.delta),
             "-" if r.rel is None else f"{100 * r.rel:+.2f}%"] for r in rows]
    return _table(["task", "metric", name_a, name_b, "delta", "rel"], body) if body else "(no metrics)"


def report_filename(model: str) -> str:
    """``eval_<last path part>.json``, safe for any model name or path."""
    stem = Path(str(model).rstrip("/")).name or "model"
    return f"eval_{re.sub(r'[^A-Za-z0-9_.-]+', '_', stem)}.json"


def save_report(report: dict[str, Any], output_dir: str | Path) -> Path:
    """Write the report as JSON in ``output_dir`` (created); returns the file path."""
    out = Path(output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    path = out / report_filename(report.get("model", "model"))
    path.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    return path


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a report written by ``save_report`` (a JSON file, or a folder holding exactly one)."""
    p = Path(path).expanduser()
    if p.is_dir():
        found = sorted(p.glob("eval_*.json"))
        if len(found) != 1:
            raise EvalError(f"{str(p)!r} holds {len(found)} eval_*.json reports; name the file to compare")
        p = found[0]
    if not p.is_file():
        raise EvalError(f"no evaluation report at {str(path)!r}; give a JSON written by `ar eval`")
    report = json.loads(p.read_text(encoding="utf-8"))
    if not isinstance(report, dict) or "model" not in report:
        raise EvalError(f"{str(p)!r} is not an `ar eval` report (no 'model' key)")
    return report

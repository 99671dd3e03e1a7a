"""``ar eval``: perplexity and lm-eval tasks on a model directory, or two models compared.

    ar eval MODEL [--tasks wikitext2_lastword,piqa] [--ppl_text FILE] [--windows 20]
    ar eval --compare FP_DIR_OR_REPORT Q_DIR_OR_REPORT --tasks wikitext2_lastword

Parses and validates flags, calls ``ar_eval.evaluate_model`` and prints the tables; every
piece of logic a library user would need lives in ar-eval.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger("ar")

# the held-out WikiText-2 text, looked for relative to the working directory (and two levels up)
DEFAULT_TEXT_NAME = Path("shared") / "data" / "wikitext2_eval.txt"
TEXT_ENV = "AR_EVAL_TEXT"


def add_parser(subparsers: Any) -> None:
    """Register ``eval`` and its flags on the ``ar`` sub-command parser."""
    p = subparsers.add_parser("eval", help="perplexity and lm-eval tasks on a model; --compare two",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_path", nargs="?", help="model directory (original, fake or quantized)")
    p.add_argument("--model", dest="model_flag", help="the model directory (same as the positional)")
    add_eval_flags(p)
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="two model directories or eval reports (JSON) side by side with deltas (B - A)")
    p.add_argument("--ppl_text", default=None,
                   help=f"text file or dataset name (wikitext2) for perplexity; 'none' to skip. Default: "
                        f"${TEXT_ENV}, else {DEFAULT_TEXT_NAME} under the working directory if present")
    p.add_argument("--seqlen", type=int, default=512, help="perplexity window length in tokens (512)")
    p.add_argument("--windows", type=int, default=None, help="number of perplexity windows (all if unset)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="load dtype (auto: float32 on CPU, the checkpoint's on GPU)")
    p.add_argument("--output_dir", default="eval_results", help="where the JSON reports go (eval_results)")
    p.set_defaults(func=run)


def add_eval_flags(p: argparse.ArgumentParser) -> None:
    """The lm-eval flags shared with ``ar quantize`` (which evaluates right after tuning)."""
    p.add_argument("--tasks", default=None, help="comma-separated lm-eval tasks, e.g. wikitext2_lastword")
    p.add_argument("--eval_bs", default="auto", help="lm-eval batch size: an integer or 'auto'")
    p.add_argument("--limit", default=None, help="documents per task: a count, or a fraction < 1")
    p.add_argument("--num_fewshot", type=int, default=None, help="few-shot examples (task default if unset)")
    p.add_argument("--eval_task_by_task", action="store_true",
                   help="one task at a time: a failing task is reported and the rest go on")
    p.add_argument("--eval_backend", default="hf", choices=["hf", "vllm"], help="lm-eval model backend")
    p.add_argument("--include_path", action="append", default=None,
                   help="folder of extra lm-eval task YAMLs (repeatable)")
    if not any(a.dest == "device" for a in p._actions):
        p.add_argument("--device", default=None, help="cpu, cuda, or GPU indices such as 0 or 0,1 (vLLM TP)")


def lm_eval_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ar_eval.evaluate`` keyword arguments from parsed flags (shared with quantize)."""
    return dict(batch_size=_batch_size(args.eval_bs), limit=_limit(args.limit), num_fewshot=args.num_fewshot,
                task_by_task=args.eval_task_by_task, include_path=args.include_path)


def _batch_size(value: str | int) -> int | str:
    text = str(value).strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    if text.startswith("auto"):
        return text
    raise SystemExit(f"ar eval: --eval_bs {value!r} is not a positive integer or 'auto'")


def _limit(value: str | None) -> int | float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise SystemExit(f"ar eval: --limit {value!r} is not a number (a count, or a fraction < 1)") from None
    if number <= 0:
        raise SystemExit(f"ar eval: --limit {value!r} must be > 0")
    return number if number < 1 else int(number)


def default_ppl_text(explicit: str | None) -> str | None:
    """The perplexity text: the flag, else $AR_EVAL_TEXT, else shared/data/wikitext2_eval.txt nearby."""
    if explicit is not None:
        return None if explicit.lower() == "none" else explicit
    if os.environ.get(TEXT_ENV):
        return os.environ[TEXT_ENV]
    for base in [Path.cwd(), *list(Path.cwd().parents)[:2]]:
        if (base / DEFAULT_TEXT_NAME).is_file():
            return str(base / DEFAULT_TEXT_NAME)
    return None


def run(args: argparse.Namespace) -> int:
    """Evaluate one model, or compare two; print tables; 0 on success, 1 if a task failed, 2 on bad input."""
    from ar_schemes import ArError

    try:
        if args.compare:
            return _compare(args)
        model = args.model_flag or args.model_path
        if not model:
            raise SystemExit("ar eval: give a model directory (positional or --model), or --compare A B")
        report = _evaluate(model, args)
    except ArError as e:
        print(f"ar eval: error: {e}")
        return 2
    _print_report(report)
    return 1 if (report.get("lm_eval") or {}).get("failed") else 0


def _evaluate(model: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from ar_eval import evaluate_model

    ppl_text = default_ppl_text(args.ppl_text)
    if ppl_text is None and not args.tasks:
        raise SystemExit("ar eval: nothing to do: no --tasks and no perplexity text (give --ppl_text FILE "
                         f"or set ${TEXT_ENV})")
    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    return evaluate_model(model, name=model, tasks=args.tasks, ppl_text=ppl_text, seqlen=args.seqlen,
                          windows=args.windows, output_dir=args.output_dir, device=args.device,
                          backend=args.eval_backend, dtype=dtype, **lm_eval_options(args))


def _load_or_evaluate(item: str, args: argparse.Namespace) -> dict[str, Any]:
    """A report file (or a folder of one) is read; a model directory is evaluated now."""
    from ar_eval import load_report

    path = Path(item)
    if path.is_dir() and (path / "config.json").is_file():
        return _evaluate(item, args)
    return load_report(path)


def _compare(args: argparse.Namespace) -> int:
    from ar_eval import compare_results, format_comparison

    a, b = (_load_or_evaluate(item, args) for item in args.compare)
    rows = compare_results(a, b)
    print(format_comparison(rows, Path(a["model"]).name or "A", Path(b["model"]).name or "B"))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dump = [dict(task=r.task, metric=r.metric, a=r.a, b=r.b, delta=r.delta, rel=r.rel) for r in rows]
    path = out / "compare.json"
    path.write_text(json.dumps({"a": a["model"], "b": b["model"], "rows": dump}, indent=2), encoding="utf-8")
    print(f"comparison written to {path}")
    return 0


def _print_report(report: dict[str, Any]) -> None:
    from ar_eval import format_table

    print(f"model: {report['model']}")
    print(format_table(report))
    if report.get("path"):
        print(f"full results written to {report['path']}")

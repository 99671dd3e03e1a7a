"""One call for a full evaluation: perplexity and/or lm-eval tasks, a report, a JSON file.

Why here and not in the CLI: ``ar quantize --tasks`` evaluates the in-memory model right after
tuning and ``ar eval`` evaluates a directory; a library user wants the same in one call.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import EvalError
from .harness import evaluate
from .loading import load_model
from .perplexity import perplexity
from .results import make_report, save_report

logger = logging.getLogger("ar")


def evaluate_model(model_or_path: Any, tokenizer: Any = None, *, name: str | None = None,
                   tasks: str | Sequence[str] | None = None, ppl_text: str | Path | None = None,
                   seqlen: int = 512, windows: int | None = None, output_dir: str | Path | None = None,
                   device: str | None = None, backend: str = "hf", dtype: Any = None,
                   **lm_eval_options: Any) -> dict[str, Any]:
    """Evaluate a model object (with tokenizer) or a model directory; return (and save) the report.

    ``ppl_text`` (file or dataset name) adds perplexity over ``windows`` windows of ``seqlen``;
    ``tasks`` adds lm-eval (options as ``evaluate``: batch_size, limit, num_fewshot,
    task_by_task, include_path); ``dtype`` is the load dtype of a
    directory (None: float32 on CPU, the checkpoint's on GPU). With ``output_dir`` the report is written there as JSON.

    >>> report = evaluate_model(model, tok, name="W4A16", tasks="wikitext2_lastword",
    ...                         ppl_text="wikitext2_eval.txt", windows=20)  # doctest: +SKIP
    """
    if not tasks and ppl_text is None:
        raise EvalError("nothing to evaluate: give tasks (e.g. 'wikitext2_lastword') and/or a ppl_text")
    is_path = isinstance(model_or_path, (str, Path))
    model, tok = model_or_path, tokenizer
    if is_path and (ppl_text is not None or backend == "hf"):
        model, loaded = load_model(model_or_path, device, dtype=dtype)
        tok = loaded if tok is None else tok
    elif not is_path and tok is None:
        raise EvalError("evaluate_model() got a model object but tokenizer=None; pass its tokenizer")
    label = name or (str(model_or_path) if is_path else type(model_or_path).__name__)
    ppl = perplexity(model, tok, ppl_text, seqlen=seqlen, windows=windows) if ppl_text is not None else None
    if ppl is not None:
        logger.info("%s: perplexity %.4f (%d windows, %d tokens)", label, ppl.ppl, ppl.windows, ppl.tokens)
    results = None
    if tasks:
        target = model_or_path if (is_path and backend == "vllm") else model
        results = evaluate(target, tok, tasks, backend=backend, device=device, **lm_eval_options)
    report = make_report(label, ppl, results)
    if output_dir is not None:
        path = save_report(report, output_dir)
        logger.info("evaluation report written to %s", path)
        report["path"] = str(path)
    return report

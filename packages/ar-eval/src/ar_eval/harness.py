"""lm-evaluation-harness on an original, quantized or in-memory model.

Why a wrapper: the quantize command evaluates the fake-quantized model still in memory, the
eval command evaluates a checkpoint (loaded through ar-kernels when packed), and both want
the same options (batch size incl. ``auto``, limit, few-shot, one task at a time with a
failing task reported and the rest continuing) and the same offline task path: our shipped
tasks (``ar_eval/tasks``) are always on lm-eval's ``include_path``.
"""
from __future__ import annotations

import functools
import gc
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .errors import EvalError, choices_error, missing
from .loading import load_model, parse_devices

logger = logging.getLogger("ar")

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
BACKENDS = ("hf", "vllm")
BatchSize = int | str
# batch size that "auto" falls back to where probing is unsafe (CPU) or just ran out of memory
_FALLBACK_BS = 8


def _lm_eval() -> Any:
    """Import lm-eval lazily: it is an optional extra and slow to import."""
    try:
        import lm_eval
        import lm_eval.tasks  # noqa: F401
    except ImportError as e:
        raise missing("lm-eval", "lm-eval") from e
    return lm_eval


def task_manager(include_path: str | Path | Sequence[str | Path] | None = None,
                 tasks: Sequence[str] | None = None) -> Any:
    """An lm-eval TaskManager that sees our offline tasks and any ``include_path`` given.

    Why two tries: indexing lm-eval's own ~15k task configs takes a minute or more on a busy
    CPU, so when every task in ``tasks`` is found in our folders alone, that index is skipped.
    """
    extra = [include_path] if isinstance(include_path, (str, Path)) else list(include_path or [])
    paths = (str(TASKS_DIR), *(str(Path(p).expanduser().resolve()) for p in extra))
    if tasks is not None:
        local = _manager(paths, False)
        if all(t in set(local.all_tasks) for t in tasks):
            return local
    return _manager(paths, True)


@functools.lru_cache(maxsize=8)
def _manager(paths: tuple[str, ...], include_defaults: bool) -> Any:
    lm_eval = _lm_eval()
    return lm_eval.tasks.TaskManager(include_path=list(paths), include_defaults=include_defaults)


def parse_tasks(tasks: str | Sequence[str]) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]``; an empty list is an error."""
    names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
    if not names:
        raise EvalError(f"no task given (tasks={tasks!r}); pass names such as 'wikitext2_lastword,piqa'")
    return names


def evaluate(model_or_path: Any, tokenizer: Any = None, tasks: str | Sequence[str] = "wikitext2_lastword",
             batch_size: BatchSize = "auto", limit: int | float | None = None,
             num_fewshot: int | None = None, task_by_task: bool = False, backend: str = "hf",
             device: str | None = None, include_path: str | Path | Sequence[str | Path] | None = None,
             bootstrap_iters: int = 1000, seed: int = 42) -> dict[str, Any]:
    """Run lm-eval ``tasks`` on a model object (with its tokenizer) or a model directory.

    With a directory, ``tokenizer=None`` loads the one saved there.
    Returns ``{"results": {task: {metric: value}}, "failed": {task: error}, "n-shot", "config", ...}``.
    ``task_by_task`` runs one task at a time: a task that raises is reported under
    ``failed`` and the others go on; out of memory halves the batch size and retries.
    ``bootstrap_iters`` only sets how stderr of non-mean metrics is estimated (lm-eval's
    100000 costs minutes on CPU for a few hundred documents).

    >>> res = evaluate(model, tok, "wikitext2_lastword", batch_size=16, limit=50)  # doctest: +SKIP
    >>> res["results"]["wikitext2_lastword"]["acc,none"]  # doctest: +SKIP
    """
    if backend not in BACKENDS:
        raise choices_error("eval backend", backend, BACKENDS)
    names = parse_tasks(tasks)
    manager = task_manager(include_path, names)
    _check_tasks(manager, names)
    make_lm = _lm_factory(model_or_path, tokenizer, backend, device)
    options = dict(limit=limit, num_fewshot=num_fewshot, bootstrap_iters=bootstrap_iters, seed=seed)
    start = time.time()
    if task_by_task:
        out = _by_task(make_lm, names, batch_size, manager, options)
    else:
        out = _run(make_lm(batch_size), names, manager, options)
        out["failed"] = {}
    out["config"] = {"tasks": names, "batch_size": batch_size, "limit": limit, "num_fewshot": num_fewshot,
                     "backend": backend, "task_by_task": task_by_task, "seconds": round(time.time() - start, 1)}
    return out


def _check_tasks(manager: Any, names: list[str]) -> None:
    """Fail before loading any model when a task name is unknown."""
    known = set(manager.all_tasks)
    unknown = [n for n in names if n not in known and not Path(n).is_file()]
    if unknown:
        local = sorted(_manager((str(TASKS_DIR),), False).all_tasks)
        raise EvalError(f"unknown lm-eval task(s) {unknown}; run `lm-eval ls tasks` for all names "
                        f"(offline tasks shipped with ar-eval: {local}; add your own with include_path)")


def _run(lm: Any, names: list[str], manager: Any, options: dict[str, Any]) -> dict[str, Any]:
    """One simple_evaluate call; keeps the JSON-friendly parts of its output."""
    lm_eval = _lm_eval()
    seed = options["seed"]
    res = lm_eval.simple_evaluate(model=lm, tasks=names, num_fewshot=options["num_fewshot"],
                                  limit=options["limit"], task_manager=manager, log_samples=False,
                                  bootstrap_iters=options["bootstrap_iters"], random_seed=seed,
                                  numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed)
    if res is None:  # non-zero rank of a distributed run
        return {"results": {}}
    keep = ("results", "groups", "versions", "n-shot", "higher_is_better", "n-samples")
    return {k: res[k] for k in keep if k in res}


def _by_task(make_lm: Callable[[BatchSize], Any], names: list[str], batch_size: BatchSize,
             manager: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Each task alone; a failure is logged and recorded, and the next task runs."""
    merged: dict[str, Any] = {"results": {}, "failed": {}}
    for name in names:
        try:
            part = _with_oom_retry(lambda bs, n=name: _run(make_lm(bs), [n], manager, options), batch_size)
        except Exception as e:  # noqa: BLE001 - one task's failure must not stop the others
            logger.error("task %s failed: %s: %s", name, type(e).__name__, e)
            merged["failed"][name] = f"{type(e).__name__}: {e}"
            continue
        for key, value in part.items():
            merged.setdefault(key, {}).update(value)
    return merged


def _with_oom_retry(call: Callable[[BatchSize], dict[str, Any]], batch_size: BatchSize) -> dict[str, Any]:
    """``call(batch_size)``, halving the batch size on out-of-memory until 1."""
    bs = batch_size
    while True:
        try:
            return call(bs)
        except Exception as e:
            if not is_oom(e) or bs == 1:
                raise
            bs = _FALLBACK_BS if isinstance(bs, str) else max(1, bs // 2)
            logger.warning("out of memory; retrying with batch size %s", bs)
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def is_oom(error: BaseException) -> bool:
    """True for torch's out-of-memory errors on any device."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(error, oom_type) or "out of memory" in str(error).lower()


def _lm_factory(model_or_path: Any, tokenizer: Any, backend: str, device: str | None
                ) -> Callable[[BatchSize], Any]:
    """A function batch_size -> lm-eval LM; the model is loaded once, the wrapper per call."""
    if backend == "vllm":
        return _vllm_factory(model_or_path, device)
    if isinstance(model_or_path, (str, Path)):
        model_or_path, loaded = load_model(model_or_path, device)
        tokenizer = loaded if tokenizer is None else tokenizer  # a given tokenizer wins
    if tokenizer is None:
        raise EvalError("evaluate() got a model object but tokenizer=None; pass the model's tokenizer")
    from lm_eval.models.huggingface import HFLM

    def make(bs: BatchSize) -> Any:
        return HFLM(pretrained=model_or_path, tokenizer=tokenizer, batch_size=_resolve_bs(bs, model_or_path))

    return make


def _resolve_bs(bs: BatchSize, model: Any) -> BatchSize:
    """``auto`` probes the largest batch at the model's max length: only sane on an accelerator."""
    if isinstance(bs, str) and not bs.startswith("auto"):
        raise EvalError(f"batch size {bs!r} is not an integer or 'auto'")
    if isinstance(bs, str) and next(model.parameters()).device.type == "cpu":
        logger.info("eval batch size 'auto' on CPU -> %d (probing is slow there)", _FALLBACK_BS)
        return _FALLBACK_BS
    return bs


def _vllm_factory(model_or_path: Any, device: str | None) -> Callable[[BatchSize], Any]:
    """vLLM over the devices given (tensor parallel); needs a model directory, built once."""
    if not isinstance(model_or_path, (str, Path)):
        raise EvalError("eval backend 'vllm' needs a model directory, not an in-memory model; "
                        "save the model first or use backend='hf'")
    try:
        import vllm  # noqa: F401
        from lm_eval.models.vllm_causallms import VLLM
    except ImportError as e:
        raise missing("vllm", "vllm") from e
    devices = parse_devices(device)
    if all(d.startswith("cuda:") for d in devices):
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", ",".join(d.split(":")[1] for d in devices))
    cache: dict[str, Any] = {}

    def make(bs: BatchSize) -> Any:
        if "lm" not in cache:
            cache["lm"] = VLLM(pretrained=str(model_or_path), tensor_parallel_size=len(devices),
                               batch_size=bs, gpu_memory_utilization=0.85)
        return cache["lm"]

    return make

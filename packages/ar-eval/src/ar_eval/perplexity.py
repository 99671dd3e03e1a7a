"""Perplexity over fixed, non-overlapping windows of one tokenized text.

Why this exact recipe: the project scores every model (ours and the anchors) with the
benchmark script's method, so numbers are comparable across runs: tokenize the whole text
once, cut the first ``windows`` windows of ``seqlen`` tokens (no overlap, no stride), take the
model's mean loss on each window (``model(x, labels=x)``, i.e. ``seqlen - 1`` predicted tokens)
and average the losses weighted by ``seqlen - 1``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .errors import EvalError, choices_error, missing

logger = logging.getLogger("ar")

# name -> (datasets path, config, split, text column); joined with blank lines as is customary.
TEXT_DATASETS: dict[str, tuple[str, str | None, str, str]] = {
    "wikitext2": ("wikitext", "wikitext-2-raw-v1", "test", "text"),
    "ptb": ("ptb_text_only", "penn_treebank", "test", "sentence"),
}

# texts shipped in ar_eval/data, usable offline (see data/ATTRIBUTION.md)
BUILTIN_TEXTS = {"wikitext2_eval": "wikitext2_eval_excerpt.txt"}


@dataclass(frozen=True)
class PerplexityResult:
    """``ppl`` over ``windows`` windows of ``seqlen`` tokens (``tokens`` = windows * seqlen scored)."""

    ppl: float
    windows: int
    tokens: int
    seqlen: int
    text_tokens: int
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_text(text_or_path: str | Path) -> tuple[str, str]:
    """Resolve ``text_or_path`` to ``(text, source)``: a file, a known dataset name, or raw text.

    A string naming an existing file is read; a key of ``TEXT_DATASETS`` is loaded with
    ``datasets`` (needs the hub or its cache); any other string with a newline or a space
    is taken as the text itself.
    """
    source = str(text_or_path)
    path = Path(source).expanduser()
    if isinstance(text_or_path, Path) or _is_existing_path(source):
        if not path.is_file():
            raise EvalError(f"perplexity text file {source!r} does not exist; give a text file or one of "
                            f"{', '.join(TEXT_DATASETS)}")
        return path.read_text(encoding="utf-8"), str(path)
    if source in BUILTIN_TEXTS:
        builtin = Path(__file__).parent / "data" / BUILTIN_TEXTS[source]
        return builtin.read_text(encoding="utf-8"), source
    if source in TEXT_DATASETS:
        return _dataset_text(source), source
    if "\n" in source or " " in source:
        return source, "<text>"
    raise choices_error("perplexity text", source, [*BUILTIN_TEXTS, *TEXT_DATASETS, "a path to a text file"])


def _is_existing_path(source: str) -> bool:
    """True if ``source`` names an existing file or folder; raw text (long, multi-line) is not one."""
    if "\n" in source or len(source) > 1024:
        return False
    try:
        return Path(source).expanduser().exists()
    except OSError:  # e.g. a name component longer than the filesystem allows
        return False


def _dataset_text(name: str) -> str:
    try:
        import datasets
    except ImportError as e:
        raise missing("datasets", "datasets") from e
    path, config, split, column = TEXT_DATASETS[name]
    rows = datasets.load_dataset(path, config, split=split)
    return "\n\n".join(rows[column])


def perplexity(model: Any, tokenizer: Any, text_or_path: str | Path, seqlen: int = 512,
               windows: int | None = None) -> PerplexityResult:
    """Perplexity of a causal LM on a text, over the first ``windows`` windows of ``seqlen`` tokens.

    ``windows=None`` uses every full window. Matches the benchmark script to the last digit
    given the same model, dtype and device.

    >>> perplexity(model, tok, "wikitext2_eval.txt", seqlen=512, windows=20)  # doctest: +SKIP
    PerplexityResult(ppl=..., windows=20, tokens=10240, seqlen=512, ...)
    """
    if seqlen < 2:
        raise EvalError(f"seqlen={seqlen} is too short; it must be >= 2 (one token predicts the next)")
    if windows is not None and windows < 1:
        raise EvalError(f"windows={windows} must be >= 1, or None for every full window")
    text, source = load_text(text_or_path)
    ids = tokenizer(text, return_tensors="pt").input_ids[0]  # (text_tokens,)
    n = ids.numel() // seqlen if windows is None else min(windows, ids.numel() // seqlen)
    if n == 0:
        raise EvalError(f"the text {source!r} has {ids.numel()} tokens, fewer than one window of "
                        f"seqlen={seqlen}; use a longer text or a smaller --seqlen")
    nll = _window_nll(model, ids, seqlen, n)
    logger.info("perplexity on %s: %d windows of %d tokens", source, n, seqlen)
    return PerplexityResult(ppl=math.exp(nll / (n * (seqlen - 1))), windows=n, tokens=n * seqlen,
                            seqlen=seqlen, text_tokens=int(ids.numel()), source=source)


def _window_nll(model: Any, ids: torch.Tensor, seqlen: int, n: int) -> float:
    """Sum over windows of mean loss * (seqlen - 1): the total negative log-likelihood in nats."""
    device = _model_device(model)
    was_training = model.training
    model.eval()
    nll = 0.0
    try:
        with torch.no_grad():
            for i in tqdm(range(n), desc="perplexity", unit="window", leave=False):
                x = ids[i * seqlen:(i + 1) * seqlen].unsqueeze(0).to(device)  # (1, seqlen)
                nll += model(x, labels=x).loss.float().item() * (seqlen - 1)
    finally:
        model.train(was_training)
    return nll


def _model_device(model: Any) -> torch.device:
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    return next(model.parameters()).device

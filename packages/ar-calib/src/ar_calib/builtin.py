"""Datasets that ship inside ar-calib and need no network."""
from __future__ import annotations

from collections.abc import Iterator

from .registry import register_dataset
from .sources import embedded_corpus_path


@register_dataset("wikitext2_calib", stream=True,
                  description="the embedded WikiText-2 calibration excerpt (CC BY-SA 3.0), offline")
def wikitext2_calib(splits: tuple[str, ...] | None = None) -> Iterator[str]:
    """The embedded corpus as one text, tokenized as a stream like a local .txt file."""
    yield embedded_corpus_path().read_text(encoding="utf-8")

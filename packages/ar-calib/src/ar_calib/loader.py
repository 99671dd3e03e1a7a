"""The two calls the CLI and library users make: ``validate_dataset_spec`` and ``load_samples``."""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from .cache import cache_key, default_cache_dir, load_cached, save_cached, tokenizer_fingerprint
from .errors import CalibError
from .hub import DEFAULT_DATASET
from .sampling import draw
from .sources import Source, check_entry, memory_source, resolve_entry
from .spec import DatasetEntry, parse_dataset_spec

logger = logging.getLogger("ar")

SpecOrData = Any  # str | PathLike | DatasetEntry | Sequence[DatasetEntry] | texts | token ids | DataLoader | None


def validate_dataset_spec(spec: str | os.PathLike[str] | DatasetEntry | Sequence[DatasetEntry] | None
                          ) -> list[DatasetEntry]:
    """Check a spec cheaply, before any model loads: grammar, names registered, files present,
    options that fit their source. No network, no tokenizer. Returns the parsed entries.

    >>> validate_dataset_spec("NeelNanda/pile-10k:num=8")[0].num
    8
    """
    entries = _entries(spec)
    for i, e in enumerate(entries, start=1):
        try:
            check_entry(e)
        except CalibError as err:
            where = f"entry {i} ({e.name!r})" if len(entries) > 1 else f"{e.name!r}"
            raise CalibError(f"dataset {where}: {err}") from None
    return entries


def load_samples(spec_or_data: SpecOrData, tokenizer: Any, nsamples: int, seqlen: int, seed: int = 42,
                 cache_dir: str | os.PathLike[str] | Literal[False] | None = None) -> list[torch.Tensor]:
    """``nsamples`` calibration samples, each a 1-D LongTensor of exactly ``seqlen`` token ids.

    ``spec_or_data``: a spec string (``"a.txt,b.jsonl:num=4"``), a path, DatasetEntry objects,
    or in-memory data (a list of strings, of token-id lists or tensors, a 2-D tensor, a torch
    DataLoader); None means the default dataset (the embedded corpus, with a warning, when the
    hub is unreachable). Spec results are cached on disk under ``cache_dir`` (default
    ``~/.cache/ar/calib``; False turns it off); in-memory data is used as given, in its order.
    Raises CalibError, naming the counts, when the data is too small.

    >>> samples = load_samples("calib.txt", tok, nsamples=16, seqlen=512)  # doctest: +SKIP
    """
    _check_sizes(nsamples, seqlen)
    if _is_spec(spec_or_data):
        entries = validate_dataset_spec(spec_or_data)
        sources = [resolve_entry(e) for e in entries]
    else:
        entries, sources = [DatasetEntry("<in-memory>")], [memory_source(spec_or_data)]
    cached = cache_dir is not False and all(s.fingerprint for s in sources)
    path = Path(cache_dir) if cache_dir else default_cache_dir()
    key = _key(sources, entries, tokenizer, nsamples, seqlen, seed) if cached else ""
    if cached and (hit := load_cached(path, key)) is not None:
        return hit
    samples = draw(sources, entries, tokenizer, nsamples, seqlen, seed)
    logger.info("calibration: %d samples x %d tokens from %s", nsamples, seqlen, ", ".join(s.label for s in sources))
    if cached:
        save_cached(path, key, samples)
    return samples


def _is_spec(x: Any) -> bool:
    if x is None or isinstance(x, (str, os.PathLike, DatasetEntry)):
        return True
    return isinstance(x, (list, tuple)) and bool(x) and all(isinstance(e, DatasetEntry) for e in x)


def _entries(spec: Any) -> list[DatasetEntry]:
    if spec is None:
        return [DatasetEntry(DEFAULT_DATASET)]
    if isinstance(spec, DatasetEntry):
        return [spec]
    if isinstance(spec, os.PathLike):
        return [DatasetEntry(os.fspath(spec))]
    if isinstance(spec, str):
        return parse_dataset_spec(spec)
    if isinstance(spec, (list, tuple)) and spec and all(isinstance(e, DatasetEntry) for e in spec):
        return list(spec)
    raise CalibError(f"expected a dataset spec string, a path or DatasetEntry objects, got {type(spec).__name__}")


def _check_sizes(nsamples: int, seqlen: int) -> None:
    for name, v in (("nsamples", nsamples), ("seqlen", seqlen)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise CalibError(f"{name} must be a positive integer, got {v!r}")


def _key(sources: list[Source], entries: list[DatasetEntry], tokenizer: Any, nsamples: int, seqlen: int,
         seed: int) -> str:
    return cache_key({
        "sources": [s.fingerprint for s in sources],
        "entries": [{k: v for k, v in e.to_dict().items() if k != "name"} for e in entries],
        "kinds": [(s.stream, s.shuffle) for s in sources],
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "nsamples": nsamples, "seqlen": seqlen, "seed": seed,
    })

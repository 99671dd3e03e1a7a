"""Disk cache of finished samples, keyed by a hash of everything that decides them.

The key holds the sources' content hashes (file bytes, a registered loader's items, or the hub
name and splits), the entries' options, a fingerprint of the tokenizer (its full serialized
definition and chat template), nsamples, seqlen, seed and the sampling version. So a second run
reads one small file instead of loading and tokenizing again, and any change misses.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger("ar")

SAMPLING_VERSION = 1  # bump when the sampling rules change, so old entries are never reused


def default_cache_dir() -> Path:
    """``$AR_CACHE_DIR/calib``, else ``$XDG_CACHE_HOME/ar/calib``, else ``~/.cache/ar/calib``."""
    if os.environ.get("AR_CACHE_DIR"):
        return Path(os.environ["AR_CACHE_DIR"]) / "calib"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ar" / "calib"


# Encoded as a probe of the tokenizer's behaviour: spaces, digits, accents, CJK, newlines, BOS/EOS.
_PROBE = "The quick brown fox, 1234 jumps: wörld café 中文字 ünïcode\n\n  tabs\tand   spaces. t30 t2 t42"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt", "tokenizer_config.json")


def tokenizer_fingerprint(tok: Any) -> str:
    """A hash of what decides the token ids, cheap enough to take on every run (serializing a
    262k-entry vocabulary costs a second): class, name, size, special tokens, chat template, the
    fast tokenizer's pipeline parts, the ids of a probe text, and the tokenizer files' bytes when
    it was loaded from a local directory."""
    if tok is None:
        return "none"
    h = hashlib.sha256()
    for attr in ("name_or_path", "special_tokens_map", "chat_template", "add_bos_token", "add_eos_token",
                 "eos_token_id"):
        h.update(f"{attr}={getattr(tok, attr, None)!r};".encode())
    h.update(f"{type(tok).__name__};{len(tok)};".encode())
    backend = getattr(tok, "backend_tokenizer", None)
    for part in ("normalizer", "pre_tokenizer", "post_processor", "decoder"):
        component = getattr(backend, part, None)
        h.update(component.__getstate__() if component is not None else b"-")
    h.update(repr(list(tok(_PROBE)["input_ids"])).encode())
    folder = Path(str(getattr(tok, "name_or_path", "") or ""))
    for name in _TOKENIZER_FILES if folder.is_dir() else ():
        if (folder / name).is_file():
            h.update(hashlib.sha256((folder / name).read_bytes()).digest())
    return h.hexdigest()


def cache_key(parts: dict[str, Any]) -> str:
    blob = json.dumps({"version": SAMPLING_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def load_cached(cache_dir: Path, key: str) -> list[torch.Tensor] | None:
    path = cache_dir / f"{key}.pt"
    if not path.is_file():
        return None
    try:
        stacked = torch.load(path, weights_only=True)
    except Exception as e:  # noqa: BLE001 - a broken entry is a miss, rebuilt below
        logger.debug("ignoring unreadable calibration cache %s: %s", path, e)
        return None
    logger.info("calibration samples read from cache %s", path)
    return [row.clone() for row in stacked]


def save_cached(cache_dir: Path, key: str, samples: list[torch.Tensor]) -> None:
    """Write atomically (temp file + rename) so concurrent runs never read half a file."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
        os.close(fd)
        torch.save(torch.stack(samples), tmp)
        os.replace(tmp, cache_dir / f"{key}.pt")
    except OSError as e:  # a read-only home must not stop quantization
        logger.warning("could not write the calibration cache in %s: %s", cache_dir, e)

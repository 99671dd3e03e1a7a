"""Where records come from: local files and directories, registered names, the hub, memory.

Resolving an entry is cheap and offline-safe (``check_entry``), or full (``resolve_entry``):
the latter probes the hub for hub names and decides the embedded-corpus fallback *before* any
fingerprint is taken, so the disk cache never stores fallback samples under a hub key.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import CalibError
from .hub import DEFAULT_DATASET, can_use_cache_offline, hub_reachable
from .records import Record, records_of, to_record
from .registry import get_registered, is_registered
from .spec import DatasetEntry

logger = logging.getLogger("ar")

TEXT_SUFFIXES = (".txt",)
RECORD_SUFFIXES = (".json", ".jsonl", ".parquet")
SUFFIXES = TEXT_SUFFIXES + RECORD_SUFFIXES


@dataclass(frozen=True)
class Source:
    """Records of one entry. ``stream``: tokenize all records as one stream cut into consecutive
    windows, in order (a .txt file); ``shuffle``: shuffle records with the seed first (datasets;
    in-memory data keeps the order its caller chose). ``fingerprint`` None: never cached."""

    label: str
    load: Callable[[], Iterable[Record]]
    stream: bool = False
    shuffle: bool = True
    fingerprint: str | None = None


def embedded_corpus_path() -> Path:
    """The WikiText-2 excerpt shipped in the package (CC BY-SA 3.0; see data/ATTRIBUTION.md)."""
    return Path(str(resources.files("ar_calib") / "data" / "wikitext2_calib.txt"))


# ---- cheap checks (no network, no tokenizer) ----------------------------------------------------

def check_entry(entry: DatasetEntry) -> None:
    """Raise CalibError when ``entry`` names nothing usable or has options its source cannot take."""
    path = Path(os.path.expanduser(entry.name))
    if path.exists():
        _check_local(entry, path)
    elif not is_registered(entry.name):
        if Path(entry.name).suffix.lower() in SUFFIXES or "\\" in entry.name or entry.name.startswith((".", "/", "~")):
            raise CalibError(f"dataset file {entry.name!r} does not exist (cwd: {os.getcwd()}); check the path")
        get_registered(entry.name)  # raises the 'unknown dataset' error with the registered names


def _check_local(entry: DatasetEntry, path: Path) -> None:
    if path.is_file():
        if path.suffix.lower() not in SUFFIXES:
            raise CalibError(f"dataset file {str(path)!r} has suffix {path.suffix!r}; supported: {', '.join(SUFFIXES)}")
        if entry.splits is not None:
            raise CalibError(f"split={'+'.join(entry.splits)} cannot apply to the file {str(path)!r}; "
                             "split= picks hub splits or files of a directory")
        files = [path]
    else:
        files = _dir_files(path, entry.splits)
    if entry.apply_chat_template and all(f.suffix.lower() in TEXT_SUFFIXES for f in files):
        raise CalibError(f"{str(path)!r} is plain text, one token stream, which a chat template cannot apply to; "
                         "use a .jsonl of texts or messages, or drop apply_chat_template")


def _dir_files(root: Path, splits: tuple[str, ...] | None) -> list[Path]:
    """Supported files under ``root`` in sorted order, filtered by split (a path part or file-name
    prefix equal to the split: ``train/``, ``train.jsonl``, ``train-00000-of-00001.parquet``)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if splits is not None:
        files = [p for p in files if any(_in_split(p.relative_to(root), s) for s in splits)]
    if not files:
        which = f" for split={'+'.join(splits)}" if splits else ""
        raise CalibError(f"directory {str(root)!r} holds no {', '.join(SUFFIXES)} files{which}")
    kinds = {p.suffix.lower() in TEXT_SUFFIXES for p in files}
    if len(kinds) > 1:
        raise CalibError(f"directory {str(root)!r} mixes .txt streams with record files (.json/.jsonl/.parquet); "
                         "list them as separate entries, e.g. 'dir/a.txt,dir/b.jsonl'")
    return files


def _in_split(rel: Path, split: str) -> bool:
    stems = [*rel.parts[:-1], rel.name.split(".")[0]]
    return any(s == split or s.startswith((split + "-", split + "_")) for s in stems)


# ---- full resolution --------------------------------------------------------------------------

def resolve_entry(entry: DatasetEntry) -> Source:
    """The Source of ``entry``; hub names are probed here, the default falls back with a warning."""
    check_entry(entry)
    path = Path(os.path.expanduser(entry.name))
    if path.exists():
        return local_source(path, entry.splits)
    reg = get_registered(entry.name)
    if not reg.hub:
        items = list(reg.load(entry.splits))
        return Source(f"dataset {entry.name!r}", lambda: records_of(items, entry.name), stream=reg.stream,
                      shuffle=not reg.stream, fingerprint="registered:" + _hash_items(items))
    ok, why = hub_reachable()
    if ok or (why.endswith("is set") and can_use_cache_offline()):
        fp = f"hub:{entry.name}:{'+'.join(entry.splits or ())}"
        if ok:
            return Source(f"dataset {entry.name!r}", lambda: records_of(reg.load(entry.splits), entry.name),
                          stream=reg.stream, shuffle=not reg.stream, fingerprint=fp)
        try:  # offline mode: the datasets cache may hold it; reading it cannot hang
            items = list(reg.load(entry.splits))
            return Source(f"dataset {entry.name!r}", lambda: records_of(items, entry.name), stream=reg.stream,
                          shuffle=not reg.stream, fingerprint=fp)
        except Exception as e:  # noqa: BLE001 - any failure means "not cached"
            why = f"{why} and it is not in the local datasets cache ({e.__class__.__name__})"
    return _offline(entry, why)


def _offline(entry: DatasetEntry, why: str) -> Source:
    if entry.name != DEFAULT_DATASET:
        raise CalibError(f"cannot load hub dataset {entry.name!r}: the Hugging Face Hub is unreachable ({why}); "
                         "connect, pre-download it and set HF_DATASETS_OFFLINE=1, or give a local file "
                         f"(the embedded corpus is at {embedded_corpus_path()})")
    path = embedded_corpus_path()
    logger.warning("the Hugging Face Hub is unreachable (%s): calibrating on the embedded WikiText-2 excerpt "
                   "%s instead of the default dataset %s", why, path, DEFAULT_DATASET)
    return local_source(path, None, label=f"embedded corpus {path.name} (fallback for {DEFAULT_DATASET})")


def local_source(path: Path, splits: tuple[str, ...] | None, label: str | None = None) -> Source:
    """A file or directory: .txt files are one stream in path order; record files are shuffled."""
    files = [path] if path.is_file() else _dir_files(path, splits)
    stream = files[0].suffix.lower() in TEXT_SUFFIXES
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return Source(label or repr(str(path)), lambda: _read_files(files), stream=stream, shuffle=not stream,
                  fingerprint="local:" + h.hexdigest())


def _read_files(files: list[Path]) -> Iterator[Record]:
    for f in files:
        suffix = f.suffix.lower()
        if suffix == ".txt":
            yield Record(text=f.read_text(encoding="utf-8"))
        elif suffix == ".parquet":
            yield from _read_parquet(f)
        else:
            yield from _read_json(f)


def _read_json(f: Path) -> Iterator[Record]:
    """A JSON array (or an object holding one list), or JSON Lines; the error names the line."""
    text = f.read_text(encoding="utf-8")
    if f.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            if "Extra data" not in str(e):
                raise CalibError(f"{str(f)!r} is not valid JSON: {e}") from None
        else:
            yield from (to_record(x, f"{f.name} item {k}") for k, x in enumerate(_json_items(data, f)))
            return
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                raise CalibError(f"{f.name} line {n} is not valid JSON ({e.msg}); each line must be one item") from None
            yield to_record(item, f"{f.name} line {n}")


def _json_items(data: Any, f: Path) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if any(k in data for k in ("text", "messages", "input_ids")):
            return [data]
        if len(lists) == 1:
            return lists[0]
    raise CalibError(f"{str(f)!r} must hold a JSON array of items (or an object with one list of them), "
                     f"got {type(data).__name__} with keys {sorted(data) if isinstance(data, dict) else '-'}")


def _read_parquet(f: Path) -> Iterator[Record]:
    try:
        import pyarrow.parquet as pq  # installed with datasets; imported only when a parquet is read
    except ImportError as e:  # pragma: no cover
        raise CalibError("reading .parquet needs pyarrow: pip install 'ar-calib' (it brings datasets/pyarrow)") from e
    for k, row in enumerate(pq.read_table(f).to_pylist()):
        yield to_record(row, f"{f.name} row {k}")


def memory_source(data: Any) -> Source:
    """In-memory items or a DataLoader: read lazily, in the caller's order, never cached."""
    return Source("in-memory data", lambda: records_of(data, "data"), shuffle=False)


def _hash_items(items: list[Any]) -> str:
    """A content hash of a registered loader's items (tensors by value)."""
    def norm(x: Any) -> Any:
        if hasattr(x, "tolist"):
            return x.tolist()
        if isinstance(x, (list, tuple)):
            return [norm(y) for y in x]
        if isinstance(x, dict):
            return {str(k): norm(v) for k, v in x.items()}
        return x
    return hashlib.sha256(json.dumps(norm(items), sort_keys=True, default=str).encode()).hexdigest()


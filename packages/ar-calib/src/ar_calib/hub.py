"""Hugging Face Hub datasets: the reference's registered names, a fast reachability probe.

``datasets`` is imported only inside the loaders, so ``import ar_calib`` stays light. Before any
hub load we answer "can we reach the hub?" within a few seconds: the offline environment
variables are respected, and otherwise a TCP connect to the hub's port 443 runs in a daemon
thread with a hard deadline (a plain socket timeout does not bound the DNS lookup, which can
hang for minutes in a sandbox).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from .errors import CalibError
from .registry import register_dataset

logger = logging.getLogger("ar")

DEFAULT_DATASET = "NeelNanda/pile-10k"
PROBE_TIMEOUT_S = 3.0
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUE = ("1", "true", "yes", "on")


def offline_by_env() -> str | None:
    """The name of the set offline variable, or None."""
    for var in _OFFLINE_VARS:
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return var
    return None


def _hub_host() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """(reachable, why not) within ``timeout`` seconds, DNS included."""
    var = offline_by_env()
    if var:
        return False, f"{var} is set"
    host, port = _hub_host()
    result: list[str] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append("")
        except OSError as e:
            result.append(f"{host}:{port} is unreachable ({e.__class__.__name__}: {e})")

    t = threading.Thread(target=probe, daemon=True, name="ar-calib-hub-probe")
    t.start()
    t.join(timeout)
    if not result:
        return False, f"{host}:{port} did not answer within {timeout:g} s"
    return result[0] == "", result[0]


@dataclass(frozen=True)
class HubDataset:
    """How to read one hub dataset: its default split, the column(s) that make a text, streaming."""

    hub_id: str
    split: str = "train"
    column: str = "text"
    config: str | None = None
    streaming: bool = False
    max_rows: int | None = None   # streaming datasets are huge: read this many rows, then stop
    chat: bool = False            # the column holds chat messages
    prefix_column: str | None = None  # a column put before ``column`` (mbpp: task text, then code)

    def item(self, row: dict[str, Any]) -> Any:
        if self.chat:
            return {"messages": row[self.column]}
        if self.prefix_column:
            return f"{row[self.prefix_column]}\n{row[self.column]}"
        return row[self.column]

    def rows(self, splits: tuple[str, ...] | None) -> Iterator[Any]:
        """Yield items of every requested split, in order (``datasets`` caches the download)."""
        try:
            import datasets
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise CalibError("hub datasets need the 'datasets' package: pip install datasets") from e
        for split in splits or tuple(self.split.split("+")):
            try:
                ds = datasets.load_dataset(self.hub_id, self.config, split=split, streaming=self.streaming)
            except Exception as e:  # noqa: BLE001 - datasets raises many kinds; say which load failed
                raise CalibError(f"could not load hub dataset {self.hub_id!r} split {split!r}: "
                                 f"{e.__class__.__name__}: {e}") from e
            for k, row in enumerate(ds):
                if self.max_rows is not None and k >= self.max_rows:
                    break
                yield self.item(row)


HUB_DATASETS = (
    HubDataset("NeelNanda/pile-10k"),
    HubDataset("swift/pile-val-backup", split="validation"),
    HubDataset("BAAI/CCI3-HQ", streaming=True, max_rows=20_000),
    HubDataset("codeparrot/github-code-clean", column="code", streaming=True, max_rows=20_000),
    HubDataset("HuggingFaceH4/ultrachat_200k", split="train_sft", column="messages", chat=True),
    HubDataset("madao33/new-title-chinese", column="content"),
    HubDataset("mbpp", split="train+validation+test", column="code", prefix_column="text"),
    HubDataset("openbmb/Ultra-FineWeb", split="en", column="content", streaming=True, max_rows=20_000),
)


def _loader(hd: HubDataset) -> Callable[[tuple[str, ...] | None], Iterator[Any]]:
    def load(splits: tuple[str, ...] | None = None) -> Iterator[Any]:
        return hd.rows(splits)
    load.__doc__ = f"{hd.hub_id} from the Hugging Face Hub (default split {hd.split}, column {hd.column!r})."
    return load


for _hd in HUB_DATASETS:
    register_dataset(_hd.hub_id, hub=True)(_loader(_hd))


def can_use_cache_offline() -> bool:
    """True when ``datasets`` itself runs offline, so a load reads its cache and cannot hang."""
    import datasets
    return bool(getattr(datasets.config, "HF_HUB_OFFLINE", False) or getattr(datasets.config, "HF_DATASETS_OFFLINE",
                                                                            False))

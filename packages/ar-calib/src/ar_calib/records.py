"""One calibration record (a text, a chat or token ids) and the conversion of every accepted item form.

Accepted items: a string; ``{"text": str}``; ``{"messages": [{"role", "content"}, ...]}``;
``{"input_ids": [...]}`` (with an optional ``attention_mask`` that drops padding); a list of
token ids; a 1-D tensor (or a ``(1, L)`` one).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from .errors import CalibError

ACCEPTED = ('a string', '{"text": ...}', '{"messages": [...]}', '{"input_ids": [...]}', "a list of token ids",
            "a 1-D tensor")


@dataclass(frozen=True, eq=False)
class Record:
    """Exactly one of ``text``, ``messages`` or ``ids``."""

    text: str | None = None
    messages: tuple[dict[str, str], ...] | None = None
    ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        given = [f for f in ("text", "messages", "ids") if getattr(self, f) is not None]
        if len(given) != 1:
            raise CalibError(f"a Record holds exactly one of text, messages, ids; got {given or 'none'}")

    def plain_text(self) -> str:
        """The text, or the chat turns joined by blank lines when no chat template is applied."""
        if self.text is not None:
            return self.text
        return "\n\n".join(m["content"] for m in self.messages or ())


def to_record(item: Any, where: str) -> Record:
    """Convert one item; ``where`` ('data.jsonl line 3') names it in the error."""
    if isinstance(item, str):
        return Record(text=item)
    if isinstance(item, torch.Tensor):
        return Record(ids=_tensor_ids(item, where))
    if isinstance(item, dict):
        return _dict_record(item, where)
    if isinstance(item, (list, tuple)) and item and all(_is_int(x) for x in item):
        return Record(ids=tuple(int(x) for x in item))
    raise CalibError(f"{where}: cannot read {_short(item)}; accepted items: {', '.join(ACCEPTED)}")


def _dict_record(item: dict[str, Any], where: str) -> Record:
    if "input_ids" in item:
        ids = item["input_ids"]
        mask = item.get("attention_mask")
        if isinstance(ids, torch.Tensor):
            ids = ids.reshape(-1).tolist()
        if mask is not None:
            mask = mask.reshape(-1).tolist() if isinstance(mask, torch.Tensor) else list(mask)
            ids = [t for t, m in zip(ids, mask) if m]
        if not isinstance(ids, (list, tuple)) or not ids or not all(_is_int(x) for x in ids):
            raise CalibError(f"{where}: 'input_ids' must be a non-empty list of integers, got {_short(ids)}")
        return Record(ids=tuple(int(x) for x in ids))
    if "messages" in item:
        return Record(messages=_messages(item["messages"], where))
    if "text" in item:
        if not isinstance(item["text"], str):
            raise CalibError(f"{where}: 'text' must be a string, got {_short(item['text'])}")
        return Record(text=item["text"])
    raise CalibError(f"{where}: an object with keys {sorted(item)} has none of 'text', 'messages', 'input_ids'; "
                     f"accepted items: {', '.join(ACCEPTED)}")


def _messages(msgs: Any, where: str) -> tuple[dict[str, str], ...]:
    ok = isinstance(msgs, (list, tuple)) and msgs and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in msgs)
    if not ok:
        raise CalibError(f"{where}: 'messages' must be a non-empty list of {{'role': str, 'content': str}}, "
                         f"got {_short(msgs)}")
    return tuple({"role": m["role"], "content": m["content"]} for m in msgs)


def _tensor_ids(t: torch.Tensor, where: str) -> tuple[int, ...]:
    if t.dim() == 2 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 1 or t.numel() == 0 or t.dtype.is_floating_point or t.dtype == torch.bool:
        raise CalibError(f"{where}: a token tensor must be 1-D (or (1, L)) integers, got shape "
                         f"{tuple(t.shape)} dtype {t.dtype}")
    return tuple(t.tolist())


def _is_int(x: Any) -> bool:
    return (isinstance(x, int) and not isinstance(x, bool)) or (
        isinstance(x, torch.Tensor) and x.dim() == 0 and not x.dtype.is_floating_point)


def _short(x: Any) -> str:
    r = repr(x)
    return f"{type(x).__name__} {r[:60] + '...' if len(r) > 60 else r}"


def expand_batch(batch: Any, where: str) -> Iterator[Record]:
    """Records of one in-memory item or DataLoader batch: a 2-D tensor or a dict of 2-D
    ``input_ids`` (+ ``attention_mask``) gives one record per row; a list gives one per element."""
    if isinstance(batch, torch.Tensor) and batch.dim() == 2 and batch.shape[0] != 1:
        for r, row in enumerate(batch):
            yield to_record(row, f"{where} row {r}")
    elif isinstance(batch, dict) and isinstance(batch.get("input_ids"), torch.Tensor) \
            and batch["input_ids"].dim() == 2:
        mask = batch.get("attention_mask")
        for r, row in enumerate(batch["input_ids"]):
            item = {"input_ids": row} if mask is None else {"input_ids": row, "attention_mask": mask[r]}
            yield to_record(item, f"{where} row {r}")
    elif isinstance(batch, (list, tuple)) and batch and not all(_is_int(x) for x in batch):
        for r, x in enumerate(batch):
            yield to_record(x, f"{where} item {r}")
    else:
        yield to_record(batch, where)


def records_of(items: Iterable[Any], where: str) -> Iterator[Record]:
    """Records of an iterable of items (a registered loader's output, a list, a DataLoader)."""
    for k, item in enumerate(items):
        if isinstance(item, Record):
            yield item
        else:
            yield from expand_batch(item, f"{where} item {k}")

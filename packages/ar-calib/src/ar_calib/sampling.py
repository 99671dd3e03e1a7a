"""From records to exactly ``nsamples`` windows of ``seqlen`` token ids, deterministically.

Per entry: a record source is shuffled with the seed, each record tokenized and kept when it has
at least ``seqlen`` tokens (cut to ``seqlen``); with ``concat`` (and always for a stream source
such as a .txt file) the records' tokens are joined into one stream, EOS between records, and
cut into consecutive windows. Candidates are produced lazily, so a big dataset is tokenized only
until enough samples are found.

Shares: entries with ``num=`` get exactly that; the rest of nsamples is shared equally by the
others (the first ones get the remainder), and one that runs short is topped up by the others.
A mixture is shuffled with the seed at the end; a single entry keeps its order, so a lone .txt
gives windows 0, 1, 2, ... of its token stream, exactly what the side-by-side benchmark gives
the reference.
"""
from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from .errors import CalibError
from .records import Record
from .sources import Source
from .spec import DatasetEntry


@dataclass(frozen=True)
class Encoder:
    """Turns a record into token ids with the tokenizer and the entry's chat options."""

    tokenizer: Any
    chat: bool = False
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        if self.chat and self.tokenizer is not None and not getattr(self.tokenizer, "chat_template", None):
            raise CalibError(f"apply_chat_template was asked, but the tokenizer "
                             f"{getattr(self.tokenizer, 'name_or_path', '') or type(self.tokenizer).__name__!r} "
                             "has no chat_template; drop the option or use a chat model's tokenizer")

    def __call__(self, rec: Record) -> list[int]:
        if rec.ids is not None:
            if self.chat:
                raise CalibError("apply_chat_template needs texts or messages, but an item holds token ids; "
                                 "drop apply_chat_template for pre-tokenized data")
            return list(rec.ids)
        tok = self._tokenizer()
        if not self.chat:
            return list(tok(rec.plain_text())["input_ids"])
        msgs = list(rec.messages) if rec.messages is not None else [{"role": "user", "content": rec.text}]
        if self.system_prompt is not None and msgs[0]["role"] != "system":
            msgs = [{"role": "system", "content": self.system_prompt}, *msgs]
        text = tok.apply_chat_template(msgs, tokenize=False)
        # The template already holds BOS and the like: do not add special tokens twice.
        return list(tok(text, add_special_tokens=False)["input_ids"])

    def _tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise CalibError("these calibration items are text, so a tokenizer is needed; pass one to "
                             "load_samples, or give token ids")
        return self.tokenizer

    @property
    def eos(self) -> int | None:
        return getattr(self.tokenizer, "eos_token_id", None) if self.tokenizer is not None else None


def candidates(source: Source, entry: DatasetEntry, tokenizer: Any, seqlen: int, seed: int) -> Iterator[list[int]]:
    """Lazily yield full ``seqlen`` windows of one entry, in their deterministic order."""
    enc = Encoder(tokenizer, entry.apply_chat_template, entry.system_prompt)
    records: Iterable[Record] = source.load()
    if source.shuffle:
        records = list(records)
        random.Random(seed).shuffle(records)
    if source.stream or entry.concat:
        yield from _windows(records, enc, seqlen)
        return
    for rec in records:
        ids = enc(rec)
        if len(ids) >= seqlen:
            yield ids[:seqlen]


def _windows(records: Iterable[Record], enc: Encoder, seqlen: int) -> Iterator[list[int]]:
    """Consecutive windows of the records' joined token stream (EOS between records, not after)."""
    buf: list[int] = []
    for k, rec in enumerate(records):
        if k and enc.eos is not None:
            buf.append(enc.eos)
        buf.extend(enc(rec))
        n = len(buf) // seqlen
        for i in range(n):
            yield buf[i * seqlen:(i + 1) * seqlen]
        buf = buf[n * seqlen:]


def shares(entries: list[DatasetEntry], nsamples: int) -> list[int]:
    """``num=`` counts first, the rest split equally over the other entries (earlier ones +1)."""
    fixed = sum(e.num or 0 for e in entries)
    free = [i for i, e in enumerate(entries) if e.num is None]
    rest = nsamples - fixed
    if rest < 0:
        raise CalibError(f"the num= counts add up to {fixed}, more than nsamples={nsamples}; "
                         f"raise nsamples to {fixed} or lower the num= counts")
    if rest > 0 and not free:
        raise CalibError(f"the num= counts add up to {fixed}, fewer than nsamples={nsamples}; set nsamples={fixed}, "
                         "raise a num=, or add an entry without num= to take the rest")
    out = [e.num or 0 for e in entries]
    for j, i in enumerate(free):
        out[i] = rest // len(free) + (1 if j < rest % len(free) else 0)
    return out


def draw(sources: list[Source], entries: list[DatasetEntry], tokenizer: Any, nsamples: int, seqlen: int,
         seed: int) -> list[torch.Tensor]:
    """Exactly ``nsamples`` LongTensors of ``seqlen`` ids; raises one-line CalibError with counts."""
    want = shares(entries, nsamples)
    its = [candidates(s, e, tokenizer, seqlen, seed + 7919 * i) for i, (s, e) in enumerate(zip(sources, entries))]
    taken = [_take(it, n) for it, n in zip(its, want)]
    done = [len(t) < n for t, n in zip(taken, want)]  # exhausted: it gave all it has
    _top_up(its, taken, want, done, entries)
    if sum(len(t) for t in taken) < nsamples or any(e.num and len(t) < e.num for t, e in zip(taken, entries)):
        raise _too_small(sources, entries, taken, done, nsamples, seqlen)
    flat = [ids for t in taken for ids in t]
    if len(entries) > 1:
        random.Random(seed).shuffle(flat)
    return [torch.tensor(ids, dtype=torch.long) for ids in flat]


def _take(it: Iterator[list[int]], n: int) -> list[list[int]]:
    out: list[list[int]] = []
    while len(out) < n:
        nxt = next(it, None)
        if nxt is None:
            break
        out.append(nxt)
    return out


def _top_up(its: list[Iterator[list[int]]], taken: list[list[list[int]]], want: list[int], done: list[bool],
            entries: list[DatasetEntry]) -> None:
    """Entries without num= that still have data cover the shortfall of those that ran out."""
    deficit = sum(max(0, n - len(t)) for t, n, e in zip(taken, want, entries) if e.num is None)
    open_ = [i for i, e in enumerate(entries) if e.num is None and not done[i]]
    while deficit > 0 and open_:
        for i in list(open_):
            nxt = next(its[i], None)
            if nxt is None:
                open_.remove(i)
                done[i] = True
                continue
            taken[i].append(nxt)
            deficit -= 1
            if deficit == 0:
                break


def _too_small(sources: list[Source], entries: list[DatasetEntry], taken: list[list[list[int]]], done: list[bool],
               nsamples: int, seqlen: int) -> CalibError:
    found = sum(len(t) for t in taken)
    parts = []
    for s, e, t, d in zip(sources, entries, taken, done):
        has = f"has only {len(t)}" if d else f"gave {len(t)}"
        parts.append(f"{s.label} {has} (num={e.num})" if e.num else f"{s.label} {has}")
    hint = "" if all(e.concat or s.stream for s, e in zip(sources, entries)) else ", add ':concat' to pack short texts"
    return CalibError(f"too little calibration data: found {found} samples of {seqlen} tokens, nsamples={nsamples} "
                      f"asked ({'; '.join(parts)}); lower nsamples or seqlen{hint}, or add data")

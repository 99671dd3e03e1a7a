"""The dataset specification grammar: one parser, one formatter, a clear error for every bad part.

Grammar (entries joined by ``,``; options joined by ``:``)::

    spec    := entry ("," entry)*
    entry   := name (":" option)*
    option  := "split=" name ("+" name)* | "num=" N | "concat"[=bool]
             | "apply_chat_template"[=bool] | "system_prompt=" text

Any name or value may be quoted with ``"..."`` or ``'...'`` to hold ``,`` ``:`` or edge spaces;
inside quotes a backslash escapes the quote character and itself. Unquoted values keep their
inner spaces (``system_prompt=You are a helpful assistant``) and lose only the outer ones.
A Windows drive letter (``C:\\data\\a.txt``) stays part of the name.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from .errors import CalibError, choices_error

OPTIONS = ("split", "num", "concat", "apply_chat_template", "system_prompt")
_FLAGS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}
_SPECIAL = set(",:\"'\\")
SPEC_VERSION = 1

# One segment of an entry: a list of (text, quoted) parts, as the scanner found them.
_Part = tuple[str, bool]


@dataclass(frozen=True)
class DatasetEntry:
    """One calibration source of a spec: a registered name, a local path, plus its options.

    ``num`` is the exact sample count this entry must give (the rest of nsamples is shared
    equally by entries without one). ``system_prompt`` implies ``apply_chat_template``.

    >>> DatasetEntry("data.jsonl", num=4).to_spec()
    'data.jsonl:num=4'
    """

    name: str
    splits: tuple[str, ...] | None = None
    num: int | None = None
    concat: bool = False
    apply_chat_template: bool = False
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise CalibError(f"dataset name must be a non-empty string, got {self.name!r}")
        if self.splits is not None:
            _check_splits(self.splits)
        if self.num is not None and (isinstance(self.num, bool) or not isinstance(self.num, int) or self.num < 1):
            raise CalibError(f"num must be a positive integer, got {self.num!r}")
        if self.system_prompt is not None and (not isinstance(self.system_prompt, str) or not self.system_prompt):
            raise CalibError(f"system_prompt must be a non-empty string, got {self.system_prompt!r}")
        if self.system_prompt is not None and not self.apply_chat_template:
            raise CalibError(f"system_prompt={self.system_prompt!r} needs apply_chat_template=True "
                             "(the parser sets it for you)")

    def to_spec(self) -> str:
        """The canonical spec text of this entry; ``parse_dataset_spec`` reads it back equal."""
        parts = [_quote(self.name, name=True)]
        if self.splits is not None:
            parts.append("split=" + "+".join(_quote(s) for s in self.splits))
        if self.num is not None:
            parts.append(f"num={self.num}")
        if self.concat:
            parts.append("concat")
        if self.apply_chat_template and self.system_prompt is None:
            parts.append("apply_chat_template")
        if self.system_prompt is not None:
            parts.append("system_prompt=" + _quote(self.system_prompt))
        return ":".join(parts)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["splits"] = list(self.splits) if self.splits is not None else None
        return {"version": SPEC_VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetEntry:
        d = dict(d)
        version = d.pop("version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise CalibError(f"DatasetEntry dict version {version!r} is not supported; valid: {SPEC_VERSION}")
        if d.get("splits") is not None:
            d["splits"] = tuple(d["splits"])
        return cls(**d)


def _check_splits(splits: tuple[str, ...]) -> None:
    if not isinstance(splits, tuple) or not splits:
        raise CalibError(f"splits must be a non-empty tuple of split names, got {splits!r}")
    for s in splits:
        if not isinstance(s, str) or not s.strip() or "+" in s or s != s.strip():
            raise CalibError(f"bad split name {s!r} in {splits!r}: use non-empty names without '+' "
                             "or edge spaces, joined by '+' (split=train+validation)")


def format_dataset_spec(entries: list[DatasetEntry] | tuple[DatasetEntry, ...]) -> str:
    """The spec text of ``entries``: the inverse of :func:`parse_dataset_spec`."""
    return ",".join(e.to_spec() for e in entries)


def _quote(value: str, name: bool = False) -> str:
    """Quote ``value`` only when the grammar needs it (specials, edge spaces, '+' in splits)."""
    needs = (not value or value != value.strip() or any(c in _SPECIAL for c in value)
             or (not name and "+" in value))
    if not needs:
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_dataset_spec(spec: str) -> list[DatasetEntry]:
    """Parse ``"a.txt,b.jsonl:num=4:apply_chat_template"`` into one DatasetEntry per source.

    Raises CalibError naming the entry, the bad part and the valid choices.

    >>> [e.name for e in parse_dataset_spec("a.txt,NeelNanda/pile-10k:num=8")]
    ['a.txt', 'NeelNanda/pile-10k']
    """
    if not isinstance(spec, str):
        raise CalibError(f"a dataset spec must be a string, got {type(spec).__name__}: {spec!r}")
    if not spec.strip():
        raise CalibError("empty dataset spec; give a dataset name or file, e.g. 'NeelNanda/pile-10k' or 'data.txt'")
    entries = []
    for i, segments in enumerate(_scan(spec), start=1):
        try:
            entries.append(_entry(segments))
        except CalibError as e:
            raise CalibError(f"dataset spec {spec!r}, entry {i}: {e}") from None
    return entries


def _scan(spec: str) -> list[list[list[_Part]]]:
    """Split ``spec`` into entries -> segments -> parts, honouring quotes and escapes."""
    entries: list[list[list[_Part]]] = [[[]]]
    buf, i = "", 0

    def flush() -> None:
        nonlocal buf
        if buf:
            entries[-1][-1].append((buf, False))
            buf = ""

    while i < len(spec):
        c = spec[i]
        if c in "\"'":
            flush()
            text, i = _read_quoted(spec, i)
            entries[-1][-1].append((text, True))
            continue
        if c == ",":
            flush()
            entries.append([[]])
        elif c == ":":
            flush()
            entries[-1].append([])
        else:
            buf += c
        i += 1
    flush()
    return entries


def _read_quoted(spec: str, start: int) -> tuple[str, int]:
    """Read a quoted string starting at ``spec[start]``; returns (text, index after it)."""
    q, i, out = spec[start], start + 1, []
    while i < len(spec):
        c = spec[i]
        if c == "\\" and i + 1 < len(spec) and spec[i + 1] in (q, "\\"):
            out.append(spec[i + 1])
            i += 2
            continue
        if c == q:
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise CalibError(f"unterminated quote {q} starting at character {start + 1} of {spec!r}; close it with {q}")


def _text(parts: list[_Part]) -> str:
    """Join parts, trimming outer spaces of unquoted edge parts only (quoted text is kept as is)."""
    parts = list(parts)
    if parts and not parts[0][1]:
        parts[0] = (parts[0][0].lstrip(), False)
    if parts and not parts[-1][1]:
        parts[-1] = (parts[-1][0].rstrip(), False)
    return "".join(p for p, _ in parts)


def _is_blank(parts: list[_Part]) -> bool:
    return all(not q and not p.strip() for p, q in parts)


def _entry(segments: list[list[_Part]]) -> DatasetEntry:
    segments = _join_drive_letter(segments)
    if _is_blank(segments[0]):
        raise CalibError("empty dataset name (stray ',' or ':'?); entries look like 'name[:option...]'")
    fields: dict[str, Any] = {"name": _text(segments[0])}
    seen: set[str] = set()
    for seg in segments[1:]:
        key, value = _split_option(seg)
        if key in seen:
            raise CalibError(f"option {key!r} given twice")
        seen.add(key)
        _set_option(fields, key, value)
    if fields.get("system_prompt") is not None:
        if fields.get("apply_chat_template") is False and "apply_chat_template" in seen:
            raise CalibError("system_prompt needs the chat template, but apply_chat_template=false was given")
        fields["apply_chat_template"] = True
    return DatasetEntry(**fields)


def _join_drive_letter(segments: list[list[_Part]]) -> list[list[_Part]]:
    """Keep ``C:\\path`` and ``C:/path`` whole: a lone letter then a slash is a drive, not an option."""
    first = segments[0]
    if (len(segments) > 1 and len(first) == 1 and not first[0][1] and re.fullmatch(r"\s*[A-Za-z]", first[0][0])
            and segments[1] and not segments[1][0][1] and segments[1][0][0][:1] in ("\\", "/")):
        joined = [(first[0][0] + ":", False), *segments[1]]
        return [joined, *segments[2:]]
    return segments


def _split_option(seg: list[_Part]) -> tuple[str, str | None]:
    """(key, value or None for a bare flag); the key is the unquoted text before the first '='."""
    if _is_blank(seg):
        raise CalibError(f"empty option (stray ':'?); valid options: {', '.join(OPTIONS)}")
    key_parts: list[str] = []
    for j, (text, quoted) in enumerate(seg):
        if not quoted and "=" in text:
            head, tail = text.split("=", 1)
            key_parts.append(head)
            rest = ([(tail, False)] if tail else []) + seg[j + 1:]
            return _key("".join(key_parts)), _text(rest)
        key_parts.append(text)
    return _key("".join(key_parts)), None


def _key(raw: str) -> str:
    key = raw.strip()
    if key not in OPTIONS:
        raise choices_error("option", key, OPTIONS, "options look like 'num=8' or 'concat'; quote a value that "
                            "holds ':' or ',' (system_prompt=\"Note: be brief\")")
    return key


def _set_option(fields: dict[str, Any], key: str, value: str | None) -> None:
    if key in ("concat", "apply_chat_template"):
        fields[key] = True if value is None else _flag(key, value)
        return
    if value is None or value == "":
        raise CalibError(f"option {key!r} needs a value, e.g. {_EXAMPLES[key]}")
    if key == "num":
        if not re.fullmatch(r"\d+", value) or int(value) < 1:
            raise CalibError(f"num={value!r} is not a positive integer; e.g. num=32")
        fields["num"] = int(value)
    elif key == "split":
        splits = tuple(s.strip() for s in value.split("+"))
        if any(not s for s in splits):
            raise CalibError(f"split={value!r} has an empty split name; join names with '+', e.g. split=train+test")
        fields["splits"] = splits
    else:
        fields["system_prompt"] = value


_EXAMPLES = {"num": "num=32", "split": "split=train+validation", "system_prompt": 'system_prompt="You are helpful."'}


def _flag(key: str, value: str) -> bool:
    v = value.strip().lower()
    if v not in _FLAGS:
        raise CalibError(f"{key}={value!r} is not a boolean; valid values: {', '.join(_FLAGS)} (or just '{key}')")
    return _FLAGS[v]

"""The exporter interface, the format registry and the atomic write every exporter uses."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ar_schemes import QuantizedModel, QuantScheme

from .errors import ExportError


class Exporter:
    """One checkpoint format. Subclasses implement ``check`` and ``write``.

    ``check`` runs before any tuning: it returns None when the format can carry the scheme of a
    layer, else a sentence saying why not and what would work.
    """

    name: str = ""

    def check(self, layer: str, scheme: QuantScheme) -> str | None:
        return None

    def check_model(self, layer_schemes: dict[str, QuantScheme | None]) -> list[str]:
        """Problems of a whole model's scheme assignment (e.g. mixed bits in fused groups)."""
        return [f"{name}: {msg}" for name, s in layer_schemes.items()
                if s is not None and (msg := self.check(name, s))]

    def write(self, qmodel: QuantizedModel, model: Any, tokenizer: Any, out_dir: Path, **options: Any) -> None:
        raise NotImplementedError


FORMATS: dict[str, type[Exporter]] = {}


def register_format(name: str) -> Callable[[type[Exporter]], type[Exporter]]:
    """Class decorator registering an exporter under ``name`` (``@register_format("auto_awq")``)."""
    def deco(cls: type[Exporter]) -> type[Exporter]:
        cls.name = name
        FORMATS[name] = cls
        return cls
    return deco


def get_exporter(fmt: str) -> Exporter:
    """The exporter of ``fmt``; ``gguf:q4_k_m`` style names go to the ``gguf`` exporter."""
    base = fmt.split(":", 1)[0].lower()
    if base not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; valid choices: {', '.join(sorted(FORMATS))}")
    cls = FORMATS[base]
    return cls(fmt) if base == "gguf" else cls()  # type: ignore[call-arg]


def parse_formats(formats: str | list[str]) -> list[str]:
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    items = [f.strip() for f in items if f.strip()]
    if not items:
        raise ExportError("no format given; valid choices: " + ", ".join(sorted(FORMATS)))
    for f in items:
        get_exporter(f)
    return items


def check_formats(formats: str | list[str], layer_schemes: dict[str, QuantScheme | None]) -> None:
    """Raise one error listing every scheme/format incompatibility, before any tuning."""
    problems = []
    for f in parse_formats(formats):
        problems += [f"[{f}] {p}" for p in get_exporter(f).check_model(layer_schemes)]
    if problems:
        shown = "\n  ".join(problems[:10]) + (f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise ExportError(f"the scheme cannot be exported in the requested format(s):\n  {shown}")


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; on success it replaces ``target``.

    On any failure the temporary directory is removed and an existing ``target`` is untouched.
    """
    target = Path(target).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save(qmodel: QuantizedModel, model: Any, tokenizer: Any, output_dir: str | os.PathLike[str],
         formats: str | list[str] = "auto_round", **options: Any) -> dict[str, Path]:
    """Write the quantized model in each format; returns format -> directory.

    One format writes ``output_dir`` itself; several write ``output_dir/<format>`` each.

    >>> save(qmodel, model, tok, "out", "auto_round,auto_gptq")  # doctest: +SKIP
    """
    names = parse_formats(formats)
    out: dict[str, Path] = {}
    for f in names:
        target = Path(output_dir) if len(names) == 1 else Path(output_dir) / f.replace(":", "-")
        with atomic_dir(target) as tmp:
            get_exporter(f).write(qmodel, model, tokenizer, tmp, **options)
        out[f] = target
    return out

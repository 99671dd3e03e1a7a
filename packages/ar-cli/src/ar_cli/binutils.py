"""Pass calls that are not ours to GNU binutils' ``ar``, which our command name shadows."""
from __future__ import annotations

import os
import sys
from pathlib import Path

OUR_COMMANDS = {"quantize", "eval", "list"}


def is_ours(argv: list[str]) -> bool:
    """Our sub-commands, no arguments, or a bare help request; anything else is binutils'."""
    return not argv or argv[0] in OUR_COMMANDS or argv == ["-h"] or argv == ["--help"]


def _is_self(path: Path) -> bool:
    me = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    if me is not None and path.resolve() == me:
        return True
    try:
        head = path.read_bytes()[:4096]
    except OSError:
        return False
    return b"ar_cli" in head  # a console script of ours (another environment's `ar`)


_TRIED = "AR_QUANT_PASSTHROUGH_TRIED"  # candidates already exec'd: a wrapper (pyenv shim) led back to us


def find_system_ar() -> str | None:
    """The first ``ar`` on PATH that is not this command nor a wrapper that leads back to it."""
    tried = set(filter(None, os.environ.get(_TRIED, "").split(os.pathsep)))
    for d in os.environ.get("PATH", "").split(os.pathsep):
        cand = Path(d or ".") / "ar"
        if cand.is_file() and os.access(cand, os.X_OK) and str(cand) not in tried and not _is_self(cand):
            return str(cand)
    return None


def exec_system_ar(argv: list[str]) -> int:
    """Replace this process with the system ``ar``; returns 127 when there is none."""
    target = find_system_ar()
    if target is None:
        sys.stderr.write("ar: this is the ar quantization tool; no GNU binutils `ar` was found on PATH for "
                         f"{' '.join(argv)!r} (install binutils), and `ar --help` lists our commands\n")
        return 127
    sys.stdout.flush()
    sys.stderr.flush()
    tried = os.environ.get(_TRIED, "")
    os.environ[_TRIED] = f"{tried}{os.pathsep}{target}" if tried else target
    os.execv(target, [target, *argv])
    return 0  # not reached

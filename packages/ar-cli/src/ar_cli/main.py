"""The `ar` command. Calls that are not ours (binutils archive operations) go to GNU `ar`."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import binutils  # nothing heavy before we know the call is ours: archive calls must stay fast

_COMMANDS = {"quantize": "quantize_cmd", "eval": "eval_cmd", "list": "list_cmd"}


def _command(name: str):
    return importlib.import_module(f"ar_cli.{_COMMANDS[name]}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ar", description="Quantize LLMs to 2-8 bits with SignRound, export and "
                                "evaluate. Archive operations (ar rcs lib.a x.o) go to GNU binutils' ar.")
    p.add_argument("-v", "--verbose", action="store_true", help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", metavar="{quantize,eval,list}")
    for name in _COMMANDS:
        _command(name).add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not binutils.is_ours(argv):
        return binutils.exec_system_ar(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s ar %(levelname)s %(message)s", datefmt="%H:%M:%S")
    from ar_schemes import ArError
    try:
        return _command(args.command).run(args)
    except ArError as e:
        print(f"ar: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ar: interrupted; rerun with --resume to continue from the last finished block", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

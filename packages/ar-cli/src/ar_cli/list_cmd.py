"""`ar list schemes|formats`."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list schemes or formats")
    p.add_argument("what", choices=["schemes", "formats", "recipes"])


def run(args: argparse.Namespace) -> int:
    if args.what == "schemes":
        from ar_schemes import PRESETS
        print(f"{'scheme':14} {'bits':>4} {'group':>10} {'sym':>5} {'data_type':12} {'act':>4}")
        for name, s in PRESETS.items():
            print(f"{name:14} {s.bits:>4} {str(s.group_size):>10} {str(s.sym):>5} {s.data_type:12} {s.act_bits:>4}")
    elif args.what == "recipes":
        from ar_core import RECIPES
        for name, opts in RECIPES.items():
            print(f"{name:10} {opts}")
    else:
        _formats()
    return 0


def _formats() -> None:
    import ar_export
    from ar_schemes import PRESETS
    matrix = getattr(ar_export, "format_matrix", None)
    if matrix is None:
        for f in sorted(ar_export.FORMATS):
            print(f)
        return
    table = matrix(PRESETS)
    formats = list(table)
    print(f"{'scheme':14} " + " ".join(f"{f:>14}" for f in formats))
    for name in PRESETS:
        print(f"{name:14} " + " ".join(f"{'yes' if table[f].get(name) else '-':>14}" for f in formats))

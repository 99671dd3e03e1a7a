"""AutoScheme against hand-built mixed-precision layouts on Gemma-3-270M, at the same average bits.

Every layout is quantized with the same recipe (``--iters``, default 0 = optimized RTN; 16 x 512
calibration tokens of wikitext2_calib) and scored with the shared ``ppl()`` (20 windows of 512 on
wikitext2_eval). Bits are counted as AutoScheme counts them (codes + fp16 scales + zero points of
every quantized layer; embeddings and the tied lm_head stay 16-bit and are not counted). The
hand-built layouts give the coarsest option everywhere, then upgrade whole units to the finest
option in a fixed order while the average stays within ``--avg_bits``:

- ends-in:    whole blocks from both ends inwards (0, n-1, 1, n-2, ...)
- first-k:    whole blocks from the first
- attn-first: every block's attention, then down_proj, then gate/up
- down-first: every block's down_proj, then attention, then gate/up
- attn4-mlp2: attention fine, MLP coarse, no filling (its own average)

    python benchmarks/autoscheme_gemma.py                    # the full table (about 30 min on 2 cores)
    python benchmarks/autoscheme_gemma.py --quick --windows 1  # smoke run
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import ar_core
from ar_calib import load_samples
from ar_cli.models import resolve_model
from ar_core import AutoScheme, find_blocks, find_targets, layer_bits, nominal_bits
from ar_schemes import get_scheme

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
sys.path.insert(0, str(SHARED / "bench"))
from ppl import ppl  # noqa: E402  (the shared scorer of every anchor)

LAYOUTS = ("ends-in", "first-k", "attn-first", "down-first", "attn4-mlp2")


def units(model: torch.nn.Module, order: str) -> list[list[str]]:
    """Groups of layer names upgraded together, in the layout's order."""
    blocks = find_blocks(model)
    parts: dict[str, dict[str, list[str]]] = {}
    for b in blocks:
        names = [t.name for t in find_targets(model.get_submodule(b), b)]
        parts[b] = {"attn": [n for n in names if ".self_attn." in n],
                    "down": [n for n in names if n.endswith("down_proj")],
                    "gate_up": [n for n in names if n.endswith(("gate_proj", "up_proj"))]}
    whole = {b: sum(parts[b].values(), []) for b in blocks}
    if order == "ends-in":
        idx: list[int] = []
        for i in range(len(blocks)):
            idx += [j for j in dict.fromkeys((i, len(blocks) - 1 - i)) if j not in idx]
        return [whole[blocks[i]] for i in idx]
    if order == "first-k":
        return [whole[b] for b in blocks]
    kinds = {"attn-first": ("attn", "down", "gate_up"), "down-first": ("down", "attn", "gate_up"),
             "attn4-mlp2": ("attn",)}[order]
    return [parts[b][k] for k in kinds for b in blocks]


def fill(model: torch.nn.Module, order: str, low: str, high: str, avg_bits: float) -> dict[str, str]:
    """layer_config: ``low`` everywhere, units upgraded to ``high`` in order while the average fits."""
    shapes = {t.name: t.shape for b in find_blocks(model) for t in find_targets(model.get_submodule(b), b)}
    lo, hi = get_scheme(low), get_scheme(high)
    cfg = dict.fromkeys(shapes, low)
    total = sum(math.prod(s) for s in shapes.values())
    bits = sum(layer_bits(s, lo) for s in shapes.values())
    for unit in units(model, order):
        extra = sum(layer_bits(shapes[n], hi) - layer_bits(shapes[n], lo) for n in unit)
        if order == "attn4-mlp2" or bits + extra <= avg_bits * total:
            bits += extra
            cfg.update(dict.fromkeys(unit, high))
    return cfg


def achieved_bits(qmodel) -> float:
    layers = qmodel.layers.values()
    return sum(layer_bits(q.shape, q.scheme) for q in layers) / sum(math.prod(q.shape) for q in layers)


def load(path: str, dtype: str) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()


def run_one(name: str, path: str, tok, scheme, samples, text: str, a: argparse.Namespace, **options) -> dict:
    model = load(path, a.dtype)
    start = time.time()
    qmodel = ar_core.quantize(model, tok, scheme, samples, iters=a.iters, nsamples=len(samples),
                              seqlen=samples.shape[1], **options)
    seconds = time.time() - start
    p, n = ppl(model, tok, text, 512, a.windows)
    row = {"layout": name, "avg_bits": round(achieved_bits(qmodel), 4), "ppl": round(p, 4), "windows": n,
           "quantize_s": round(seconds, 1)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--avg_bits", type=float, default=3.0)
    ap.add_argument("--options", default="W2A16G64,W4A16")
    ap.add_argument("--iters", type=int, default=0, help="0: optimized RTN; >0: SignRound iterations")
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--as_nsamples", type=int, default=8, help="AutoScheme gradient-pass samples")
    ap.add_argument("--windows", type=int, default=20)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--layouts", default="auto,auto-taylor," + ",".join(LAYOUTS) + ",uniform")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 x 128 samples, AutoScheme and attn4-mlp2")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("ar").setLevel(logging.INFO)  # AutoScheme's chosen table
    if a.quick:
        a.nsamples, a.seqlen, a.as_nsamples, a.layouts = 2, 128, 2, "auto,attn4-mlp2"
    torch.manual_seed(0)
    path = resolve_model("gemma-3-270m")
    tok = AutoTokenizer.from_pretrained(path)
    data = load_samples(str(SHARED / "data" / "wikitext2_calib.txt"), tok, a.nsamples, a.seqlen, seed=42)
    samples = torch.stack([s.reshape(-1) for s in data])
    text = (SHARED / "data" / "wikitext2_eval.txt").read_text(encoding="utf-8")
    auto = AutoScheme(a.avg_bits, a.options, nsamples=a.as_nsamples)
    ordered = sorted(auto.options, key=lambda o: nominal_bits(get_scheme(o)))
    low, high = ordered[0], ordered[-1]
    shape_model = load(path, a.dtype)
    rows = [{"layout": "fp", "avg_bits": 16.0, "ppl": round(ppl(shape_model, tok, text, 512, a.windows)[0], 4)}]
    for name in [x for x in a.layouts.split(",") if x]:
        if name in ("auto", "auto-taylor"):
            method = "taylor" if name == "auto-taylor" else "fisher"
            scheme = AutoScheme(a.avg_bits, a.options, nsamples=a.as_nsamples, method=method)
            rows.append(run_one(f"AutoScheme ({method})", path, tok, scheme, samples, text, a))
        elif name == "uniform":
            for opt in (low, high):
                rows.append(run_one(f"uniform {opt}", path, tok, opt, samples, text, a))
        else:
            cfg = fill(shape_model, name, low, high, a.avg_bits)
            rows.append(run_one(name, path, tok, low, samples, text, a, layer_config=cfg))
    print(f"\nGemma-3-270M, target {a.avg_bits} bits over {a.options}, iters={a.iters}, "
          f"{a.nsamples}x{a.seqlen} calibration, ppl over {a.windows} windows of 512 (wikitext2_eval)")
    print(f"{'layout':<24} {'avg bits':>9} {'ppl':>10}")
    for r in rows:
        print(f"{r['layout']:<24} {r['avg_bits']:>9.4f} {r['ppl']:>10.4f}")


if __name__ == "__main__":
    main()

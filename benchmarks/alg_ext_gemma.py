"""enable_alg_ext vs plain SignRound tuning at the same recipe (issue #9), Gemma-3-270M W2A16G64.

    python benchmarks/alg_ext_gemma.py [--scheme W2A16G64] [--iters 50] [--nsamples 16] [--seqlen 512]
                                       [--windows 20] [--device cpu] [--variants plain,alg_ext]

Each variant loads the model afresh, tunes it with ``ar_core.quantize`` on the same calibration
samples (``ar_calib.load_samples`` of wikitext2_calib.txt) and scores the fake-quantized model
with ``ppl()`` of ``shared/bench/ppl.py`` (first ``--windows`` x 512 tokens of wikitext2_eval.txt).
Variants: ``plain``, ``alg_ext`` (enable_alg_ext=True), ``optrtn`` / ``optrtn_ext`` (iters=0).
``--layers N`` keeps the first N decoder blocks only (a quick smoke test, not a benchmark).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from ar_calib import load_samples
from ar_core import quantize

SHARED = Path(__file__).resolve().parents[2] / "shared"
sys.path.insert(0, str(SHARED / "bench"))
from ppl import ppl  # noqa: E402  (shared/bench/ppl.py: the project's perplexity reference)

VARIANTS = {"plain": {}, "alg_ext": {"enable_alg_ext": True}, "optrtn": {"iters": 0},
            "optrtn_ext": {"iters": 0, "enable_alg_ext": True}}


def load(path: str, layers: int | None, device: str, dtype: torch.dtype):
    cfg = AutoConfig.from_pretrained(path)
    if layers:
        cfg.num_hidden_layers = layers
        if getattr(cfg, "layer_types", None):
            cfg.layer_types = cfg.layer_types[:layers]
    return AutoModelForCausalLM.from_pretrained(path, config=cfg, dtype=dtype).to(device).eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="/work/models/gemma-3-270m")
    ap.add_argument("--scheme", default="W2A16G64")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--windows", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--variants", default="plain,alg_ext", help=f"comma-separated of {sorted(VARIANTS)}")
    ap.add_argument("--layers", type=int, help="keep only the first N blocks (smoke test)")
    ap.add_argument("--no_baseline", action="store_true", help="skip the unquantized model's perplexity")
    args = ap.parse_args()
    bad = [v for v in args.variants.split(",") if v not in VARIANTS]
    if bad:
        ap.error(f"unknown variant(s) {bad}; choose from {sorted(VARIANTS)}")
    dtype = getattr(torch, args.dtype)
    tok = AutoTokenizer.from_pretrained(args.model)
    text = (SHARED / "data" / "wikitext2_eval.txt").read_text(encoding="utf-8")
    samples = load_samples(str(SHARED / "data" / "wikitext2_calib.txt"), tok, args.nsamples, args.seqlen, seed=42)
    rows = []
    if not args.no_baseline:
        p, n = ppl(load(args.model, args.layers, args.device, dtype), tok, text, 512, args.windows)
        rows.append(("16-bit", "-", f"{p:.3f}", "-"))
    for name in args.variants.split(","):
        opts = dict(iters=args.iters, nsamples=args.nsamples, seqlen=args.seqlen, batch_size=args.batch_size,
                    device=args.device) | VARIANTS[name]
        model = load(args.model, args.layers, args.device, dtype)
        t0 = time.time()
        quantize(model, tok, args.scheme, samples, **opts)
        secs = time.time() - t0
        p, n = ppl(model, tok, text, 512, args.windows)
        rows.append((name, str(opts["iters"]), f"{p:.3f}", f"{secs:.0f}"))
        print(f"{name}: ppl {p:.3f} ({n} windows), quantize {secs:.0f} s", flush=True)
    print(f"\n{args.scheme}, nsamples {args.nsamples} x seqlen {args.seqlen}, batch {args.batch_size}, "
          f"{args.windows} x 512 eval windows, {args.device}\n")
    print("| variant | iters | ppl | quantize s |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()

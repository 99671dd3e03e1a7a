"""GGUF k-quant mixes with optimized RTN: ours vs the reference AutoRound 0.16.1 (issue #9).

    python benchmarks/gguf_vs_reference.py [--types q4_k_m,q2_k_s] [--nsamples 16] [--seqlen 512]
                                           [--windows 20] [--iters 0] [--skip ours|reference]

For each type, on the same calibration samples (``ar_calib.load_samples`` of wikitext2_calib.txt,
given to both as token tensors):
  ours       ``ar_core.quantize(model, tok, "GGUF:<TYPE>", samples, iters=0)`` (each layer in the
             ggml type of llama.cpp's mix, imatrix-weighted scale/min search); scored as the
             fake-quantized model (embedding 16-bit) and as the GGUF file ``ar_export`` writes
             (tied embedding quantized as the output tensor, as in any GGUF file), loaded back
             by transformers;
  reference  ``AutoRound(model, tokenizer=tok, scheme="gguf:<type>", iters=0, dataset=samples)``
             then ``save_quantized(out, format="gguf:<type>")``, the file loaded by transformers.
All perplexities use ``ppl()`` of ``shared/bench/ppl.py`` (first ``--windows`` x 512 tokens of
wikitext2_eval.txt, float32). Needs ``pip install auto-round==0.16.1`` for the reference column
(see :func:`shim_gguf_enums` for the one workaround its GGUF converter needs with gguf 0.19.0).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from enum import Enum
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ar_calib import load_samples
from ar_core import quantize
from ar_export import save

SHARED = Path(__file__).resolve().parents[2] / "shared"
sys.path.insert(0, str(SHARED / "bench"))
from ppl import ppl  # noqa: E402  (shared/bench/ppl.py: the project's perplexity reference)


def load(path: str) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def load_gguf(out_dir: Path) -> torch.nn.Module:
    files = sorted(Path(out_dir).rglob("*.gguf"))
    if not files:
        raise SystemExit(f"no .gguf file written under {out_dir}")
    return AutoModelForCausalLM.from_pretrained(files[0].parent, gguf_file=files[0].name,
                                                dtype=torch.float32).eval()


def score_gguf(out_dir: Path, args) -> float:
    """ppl of the GGUF file under ``out_dir``, in a fresh interpreter: after AutoRound has run,
    gguf-py's reader takes minutes over the 262k-token vocabulary in the same process."""
    cmd = [sys.executable, __file__, "--score_gguf", str(out_dir), "--model", args.model, "--windows",
           str(args.windows)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def ours(ft: str, args, tok, samples, text: str, tmp: Path) -> tuple[float, float, float]:
    """(fake-quant ppl, GGUF-file ppl, seconds to quantize)."""
    model = load(args.model)
    t0 = time.time()
    qm = quantize(model, tok, f"GGUF:{ft.upper()}", samples, iters=args.iters, nsamples=args.nsamples,
                  seqlen=args.seqlen)
    secs = time.time() - t0
    fake, _ = ppl(model, tok, text, 512, args.windows)
    save(qm, model, tok, tmp / f"ours-{ft}", f"gguf:{ft}")
    return fake, score_gguf(tmp / f"ours-{ft}", args), secs


def shim_gguf_enums() -> list[str]:
    """auto-round 0.16.1's bundled llama.cpp converter names gguf-py members newer than the gguf
    release on PyPI (0.19.0: e.g. MODEL_ARCH.GEMMA4_ASSISTANT in a class body of its gemma module),
    so importing it fails before any Gemma-3 code runs. Alias each missing enum member to an
    existing one of its enum; the aliased names belong to other architectures and go unused."""
    import re

    import gguf
    from auto_round.export.export_to_gguf import llama_cpp_conversion
    root = Path(llama_cpp_conversion._bundled_root()) / "conversion"
    names = {m for f in root.rglob("*.py") for m in re.findall(r"gguf\.([A-Za-z_]+)\.([A-Z0-9_]+)\b", f.read_text())}
    added = []
    for cls_name, member in sorted(names):
        cls = getattr(gguf, cls_name, None)
        if isinstance(cls, type) and issubclass(cls, Enum) and not hasattr(cls, member):
            setattr(cls, member, next(iter(cls)))
            added.append(f"{cls_name}.{member}")
    return added


def reference(ft: str, args, tok, samples, text: str, tmp: Path) -> tuple[float, float]:
    """(GGUF-file ppl, seconds to quantize and save) of AutoRound 0.16.1."""
    from auto_round import AutoRound
    shim_gguf_enums()
    model = load(args.model)
    t0 = time.time()
    ar = AutoRound(model, tokenizer=tok, scheme=f"gguf:{ft}", iters=args.iters, nsamples=args.nsamples,
                   seqlen=args.seqlen, dataset=[s.reshape(1, -1) for s in samples], device_map=args.device)
    ar.quantize_and_save(str(tmp / f"ref-{ft}"), format=f"gguf:{ft}")
    secs = time.time() - t0
    return score_gguf(tmp / f"ref-{ft}", args), secs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="/work/models/gemma-3-270m")
    ap.add_argument("--types", default="q4_k_m,q2_k_s")
    ap.add_argument("--iters", type=int, default=0, help="0: optimized RTN (the acceptance setting)")
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--windows", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip", choices=["ours", "reference"])
    ap.add_argument("--out_dir", help="keep the GGUF files here (default: a temporary folder)")
    ap.add_argument("--score_gguf", help=argparse.SUPPRESS)  # internal: print the ppl of this GGUF folder
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(args.model)
    text = (SHARED / "data" / "wikitext2_eval.txt").read_text(encoding="utf-8")
    if args.score_gguf:
        print(ppl(load_gguf(Path(args.score_gguf)), tok, text, 512, args.windows)[0])
        return
    samples = load_samples(str(SHARED / "data" / "wikitext2_calib.txt"), tok, args.nsamples, args.seqlen, seed=42)
    base, _ = ppl(load(args.model), tok, text, 512, args.windows)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = args.out_dir or tmp
        for ft in args.types.split(","):
            o = ours(ft, args, tok, samples, text, Path(d)) if args.skip != "ours" else (float("nan"),) * 3
            print(f"{ft} ours: fake-quant {o[0]:.3f}, gguf file {o[1]:.3f} ({o[2]:.0f} s)", flush=True)
            r = reference(ft, args, tok, samples, text, Path(d)) if args.skip != "reference" else (float("nan"),) * 2
            print(f"{ft} reference: gguf file {r[0]:.3f} ({r[1]:.0f} s)", flush=True)
            rows.append((ft, o, r))
    print(f"\nGGUF, iters={args.iters}, nsamples {args.nsamples} x seqlen {args.seqlen}, {args.windows} x 512 windows; "
          f"16-bit ppl {base:.3f}\n")
    print("| type | ours fake-quant | ours .gguf | AutoRound 0.16.1 .gguf | ours s | reference s |")
    print("|---|---|---|---|---|---|")
    for ft, o, r in rows:
        print(f"| {ft} | {o[0]:.3f} | {o[1]:.3f} | {r[0]:.3f} | {o[2]:.0f} | {r[1]:.0f} |")


if __name__ == "__main__":
    main()

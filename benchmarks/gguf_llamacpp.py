"""Score our GGUF files with llama.cpp itself (llama-cpp-python): Gemma-3-270M, RTN q4_k_m.

    python benchmarks/gguf_llamacpp.py [--types q4_k_m] [--reference other.gguf ...]

Same windows as benchmarks/gguf_gemma_ppl.py (the HF tokenizer's ids, 4 x 512 tokens of
wikitext2_eval.txt), fed to llama.cpp as token ids, so the numbers compare with transformers'.
``--reference`` scores any other GGUF the same way (e.g. llama.cpp's own q4_k_m of the model).
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ar_export import save
from gguf_gemma_ppl import TEXT, rtn_gguf, windows_of
from transformers import AutoModelForCausalLM, AutoTokenizer


def _no_extra_buffers() -> None:
    """Load weights without ggml's extra CPU buffer types: its AMX path faults in sandboxes that
    do not grant AMX tile permission (seen here: general protection fault in ggml_backend_amx_mul_mat)."""
    import llama_cpp.llama_cpp as lc
    default = lc.llama_model_default_params
    if getattr(default, "_ar_patched", False):
        return

    def params():
        p = default()
        p.use_extra_bufts = False
        return p
    params._ar_patched = True  # type: ignore[attr-defined]
    lc.llama_model_default_params = params


def llama_cpp_ppl(path: Path, windows: list[torch.Tensor], threads: int = 2) -> float:
    from llama_cpp import Llama
    _no_extra_buffers()
    n = len(windows[0])
    llm = Llama(model_path=str(path), n_ctx=n, n_batch=n, logits_all=True, verbose=False, n_threads=threads)
    nll = []
    for w in windows:
        ids = w.tolist()
        llm.reset()
        llm.eval(ids)
        logits = torch.from_numpy(np.asarray(llm.scores[: n - 1], dtype=np.float32))  # (n - 1, vocab)
        nll.append(torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:])).item())
    return math.exp(sum(nll) / len(nll))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", default="q4_k_m")
    ap.add_argument("--model", default="/work/models/gemma-3-270m")
    ap.add_argument("--reference", nargs="*", default=[])
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(args.model)
    wins = windows_of(tok, TEXT.read_text()[:200_000], 512, args.windows)
    print("| file | llama.cpp ppl | s |\n|---|---|---|")
    for ft in args.types.split(","):
        t0 = time.time()
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
        qm = rtn_gguf(model, ft)
        with tempfile.TemporaryDirectory() as tmp:
            out = save(qm, model, tok, Path(tmp) / "g", f"gguf:{ft}")[f"gguf:{ft}"]
            ppl = llama_cpp_ppl(next(out.glob("*.gguf")), wins, args.threads)
        print(f"| ours RTN {ft} | {ppl:.3f} | {time.time() - t0:.0f} |", flush=True)
    for ref in args.reference:
        t0 = time.time()
        print(f"| {Path(ref).name} | {llama_cpp_ppl(Path(ref), wins, args.threads):.3f} | {time.time() - t0:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()

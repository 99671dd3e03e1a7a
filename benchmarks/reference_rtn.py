"""The reference AutoRound's RTN / optimized-RTN checkpoint (fake format) of a model, for ppl.py.

    python benchmarks/reference_rtn.py MODEL_DIR OUT_DIR --scheme W4A16 [--opt_rtn]
Plain RTN is iters=0 with disable_opt_rtn=True; --opt_rtn keeps the reference's optimized RTN.
"""
import argparse

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--scheme", default="W4A16")
    ap.add_argument("--opt_rtn", action="store_true")
    ap.add_argument("--format", default="fake")
    a = ap.parse_args()
    from auto_round import AutoRound
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    ar = AutoRound(model, tok, scheme=a.scheme, iters=0, disable_opt_rtn=not a.opt_rtn, device_map="cpu",
                   nsamples=16, seqlen=512)
    ar.quantize()
    ar.save_quantized(a.out, format=a.format, inplace=True)

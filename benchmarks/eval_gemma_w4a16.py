"""Build a W4A16 (RTN, group 128) Gemma checkpoint for the evaluation numbers in NOTES.md.

Why RTN and not SignRound: the point of these numbers is that `ar eval` scores a packed
checkpoint (loaded through ar-kernels) the same way the benchmark script scores a model;
tuning quality is measured elsewhere. Writes two folders under OUT:
  auto_round/  the packed checkpoint (ar_export "auto_round"), read back by ar_kernels.load
  fake/        the same weights dequantized, saved with save_pretrained (plain transformers)

    python benchmarks/eval_gemma_w4a16.py MODEL_DIR OUT
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import ar_export
import ar_schemes


def fake_quantize(model: torch.nn.Module, scheme: ar_schemes.QuantScheme) -> ar_schemes.QuantizedModel:
    """RTN every decoder Linear in place (weights become their dequantized values) and record it."""
    layers = {}
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and ".layers." in name:
            res = ar_schemes.quantize(mod.weight.detach().float(), scheme)  # (out, in)
            bias = None if mod.bias is None else mod.bias.detach()
            layers[name] = ar_schemes.QuantizedLayer.from_result(name, scheme, res, bias)
            mod.weight.data = res.dequant.to(mod.weight.dtype)
    return ar_schemes.QuantizedModel(layers=layers, default_scheme=scheme, block_names=["model.layers"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--scheme", default="W4A16")
    a = ap.parse_args()
    out = Path(a.out)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16).eval()
    qmodel = fake_quantize(model, ar_schemes.get_scheme(a.scheme))
    ar_export.save(qmodel, model, tok, out / "auto_round", "auto_round")
    model.save_pretrained(out / "fake")
    tok.save_pretrained(out / "fake")
    print(f"{len(qmodel.layers)} layers quantized; wrote {out / 'auto_round'} and {out / 'fake'}")


if __name__ == "__main__":
    main()

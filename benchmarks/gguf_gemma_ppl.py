"""GGUF export of Gemma-3-270M (RTN with our quantizers): perplexity of the file loaded by
transformers vs our fake-quantized model (same weights, dequantized by ar_schemes).

    python benchmarks/gguf_gemma_ppl.py --types q4_0,q4_k_m,q2_k_s,q8_0 [--model DIR] [--windows 4]

Prints one markdown row per type; the numbers go to benchmarks/NOTES.md ("GGUF").
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
from ar_export import save
from ar_schemes import (
    QuantizedLayer,
    QuantizedModel,
    get_scheme,
    ggml_scheme,
    gguf_layer_schemes,
    gguf_tensor_type,
)
from ar_schemes import quantize as ar_quantize
from transformers import AutoModelForCausalLM, AutoTokenizer

TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext2_eval.txt"


def windows_of(tok, text: str, seqlen: int, n: int) -> list[torch.Tensor]:
    ids = tok(text, return_tensors="pt").input_ids[0]
    return [ids[i * seqlen:(i + 1) * seqlen] for i in range(min(n, len(ids) // seqlen))]


@torch.no_grad()
def perplexity(model, wins: list[torch.Tensor]) -> float:
    nll = [model(w[None], labels=w[None]).loss.item() for w in wins]
    return math.exp(sum(nll) / len(nll))


def rtn_gguf(model, file_type: str) -> QuantizedModel:
    """Every block Linear quantized with the ggml type llama.cpp's mix gives it (plain RTN)."""
    cfg = model.config
    lin = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n}
    schemes = gguf_layer_schemes(file_type, lin, cfg.num_hidden_layers,
                                 shapes={n: tuple(m.weight.shape) for n, m in lin.items()},
                                 n_gqa=cfg.num_attention_heads // cfg.num_key_value_heads)
    layers = {n: QuantizedLayer.from_result(n, s, ar_quantize(lin[n].weight.detach().float(), s))
              for n, s in schemes.items() if s is not None}
    return QuantizedModel(layers=layers, default_scheme=get_scheme("GGUF:" + file_type.upper()))


def fake_quant(model, qm: QuantizedModel, file_type: str) -> None:
    """Put our dequantized weights into ``model`` (fp32), the tied embedding included."""
    for n, layer in qm.layers.items():
        model.get_submodule(n).weight.data = layer.dequantize(torch.float32)
    emb = model.get_input_embeddings()
    t = gguf_tensor_type(file_type, "output", row_size=emb.weight.shape[1])
    emb.weight.data = ar_quantize(emb.weight.data.float(), ggml_scheme(t)).dequant


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", default="q4_0,q4_k_m,q2_k_s,q8_0")
    ap.add_argument("--model", default="/work/models/gemma-3-270m")
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--seqlen", type=int, default=512)
    args = ap.parse_args()
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(args.model)
    wins = windows_of(tok, TEXT.read_text()[:200_000], args.seqlen, args.windows)
    base = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    print("| type | bf16 weights | ours (fake-quant) | GGUF via transformers | rel. diff | file MB | s |")
    print("|---|---|---|---|---|---|---|")
    ppl_base = perplexity(base, wins)
    for ft in args.types.split(","):
        t0 = time.time()
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
        qm = rtn_gguf(model, ft)
        with tempfile.TemporaryDirectory() as tmp:
            out = save(qm, model, tok, Path(tmp) / "g", f"gguf:{ft}")[f"gguf:{ft}"]
            path = next(out.glob("*.gguf"))
            mb = path.stat().st_size / 2**20
            loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
            ppl_file = perplexity(loaded.eval(), wins)
        fake_quant(model, qm, ft)
        ppl_ours = perplexity(model, wins)
        rel = abs(ppl_file - ppl_ours) / ppl_ours
        print(f"| {ft} | {ppl_base:.3f} | {ppl_ours:.3f} | {ppl_file:.3f} | {rel:.2%} | {mb:.0f} | "
              f"{time.time() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()

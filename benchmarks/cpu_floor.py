"""The CPU compute floor of tuning one Gemma-3-270M block: a plain bf16 forward + backward of the
block with gradients to every weight (no quantization), the compare.py batch (8 x 512).

The CPU counterpart of ../shared/bench/floor.py: no sign-SGD step over the same tokens can be
cheaper than this.

    python benchmarks/cpu_floor.py [--steps 10]
"""
import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ar_calib import load_samples
from ar_cli.models import resolve_model
from ar_core.blocks import find_blocks
from ar_core.capture import capture_inputs


def step_seconds(layer, x, kw, steps: int) -> float:
    def step():
        out = layer(x, **kw)
        out = out[0] if isinstance(out, tuple) else out
        out.float().pow(2).mean().backward()
    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    a = ap.parse_args()
    path = resolve_model("gemma-3-270m")
    res = {"threads": torch.get_num_threads()}
    tok = AutoTokenizer.from_pretrained(path)
    samples = torch.stack([s.reshape(-1) for s in load_samples(
        "/work/shared/data/wikitext2_calib.txt", tok, 8, 512, seed=42)])
    for attn in ("eager", "sdpa"):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, attn_implementation=attn)
        blocks = [model.get_submodule(n) for n in find_blocks(model)]
        with torch.no_grad():
            inp = capture_inputs(model, blocks, samples, "cpu", "cpu")
        layer, x, kw = blocks[0], inp.hidden, inp.kwargs[0]
        for p in layer.parameters():
            p.requires_grad_(p.dim() == 2)  # the linears' weights; the norms stay frozen, as in tuning
        res[f"eager_step_ms_{attn}"] = round(step_seconds(layer, x, kw, a.steps) * 1e3, 1)
        res[f"compiled_step_ms_{attn}"] = round(step_seconds(torch.compile(layer), x, kw, a.steps) * 1e3, 1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()

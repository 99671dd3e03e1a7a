"""Seconds per tuning iteration of one Gemma-3-270M block on this CPU (the compare.py recipe:
16 x 512 samples, batch 8), optionally with the torch profiler's top ops.

    python benchmarks/cpu_tune_block.py [--iters 10] [--block 0] [--profile] [--compile]
"""
import argparse
import time
from dataclasses import replace

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ar_calib import load_samples
from ar_cli.models import resolve_model
from ar_core.blocks import find_blocks, find_targets
from ar_core.capture import capture_inputs
from ar_core.options import QuantizeOptions
from ar_core.quantize import _forward_all, _imatrix_hooks
from ar_core.rtn import search_clip
from ar_core.signround import TuneConfig, make_learnables, restore, snapshot, tune_block
from ar_schemes import get_scheme

ap = argparse.ArgumentParser()
ap.add_argument("--iters", type=int, default=10)
ap.add_argument("--block", type=int, default=0)
ap.add_argument("--scheme", default="W4A16")
ap.add_argument("--profile", action="store_true")
ap.add_argument("--compile", action="store_true", help="the whole block step under torch.compile")
ap.add_argument("--attn", default=None, help="attn_implementation to load the model with (sdpa, eager)")
a = ap.parse_args()

path = resolve_model("gemma-3-270m")
tok = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path, dtype="auto", attn_implementation=a.attn)
samples = load_samples("/work/shared/data/wikitext2_calib.txt", tok, 16, 512, seed=42)
samples = torch.stack([s.reshape(-1) for s in samples])
names = find_blocks(model)
blocks = [model.get_submodule(n) for n in names]
with torch.no_grad():
    inp = capture_inputs(model, blocks, samples, "cpu", "cpu")
opts = QuantizeOptions.build(batch_size=8)
block = blocks[a.block]
kw = inp.kwargs[a.block]
x = inp.hidden
with torch.no_grad():
    for i in range(a.block):
        x = _forward_all(blocks[i], x, inp.kwargs[i], opts, True)
scheme = get_scheme(a.scheme)
targets = find_targets(block, names[a.block])
imatrix = _imatrix_hooks([(t, scheme) for t in targets])
with torch.no_grad():
    y = _forward_all(block, x, kw, opts, True)
for h in imatrix.pop("__handles__"):
    h.remove()
lps = [make_learnables(t, scheme, search_clip(t.weight2d().float(), scheme, imatrix.get(t.name)), "cpu")
       for t in targets]
cfg = TuneConfig(iters=a.iters, batch_size=8, amp=True, compile=a.compile)
t0 = time.time()
with torch.enable_grad():  # warm-up (compilation, allocator); its tuned state is thrown away
    start = snapshot(lps)
    tune_block(block, lps, x, y, kw, replace(cfg, iters=2), "cpu", 1)
    restore(lps, start)
print(f"warm-up {time.time() - t0:.1f} s")
t0 = time.time()
if a.profile:
    with torch.profiler.profile() as prof, torch.enable_grad():
        st = tune_block(block, lps, x, y, kw, cfg, "cpu", 1)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=60))
else:
    with torch.enable_grad():
        st = tune_block(block, lps, x, y, kw, cfg, "cpu", 1)
dt = time.time() - t0
print(f"block {a.block} {a.scheme}: {a.iters} iters in {dt:.1f} s = {dt / a.iters:.3f} s/iter "
      f"(incl. 2 full-sample evals); loss {st.first_loss:.5g} -> {st.best_loss:.5g}")

"""Multi-GPU acceptance of issue #11 on a Llama-3-8B-shaped random model (few layers).

1. split: one GPU vs each block split over GPUs by device_map (default "auto") -> the quantized
   codes / scales / zero points of every layer must be identical (eager tuning on both sides:
   a block spanning devices is never compiled, so the one-GPU run is eager too).
2. dp: data-parallel tuning on 1, 2 (, 4) GPUs -> seconds per block (median over the blocks
   after the first, which carries compile / warm-up), and the ratio to one GPU (target <= 0.6
   for 2 GPUs). With --dp_equality, the 2-GPU result is also compared with one GPU running
   batch_size/2 with 2 accumulation steps (expected bit for bit, see ar_core.distributed).

Offline: torch + transformers + the ar packages. Random weights and tokens, as gpu_speed.py.

    python benchmarks/multi_gpu.py                       # both parts, 3 layers, 200 iters
    python benchmarks/multi_gpu.py --parts dp --gpus 1,2,4 --layers 4
    python benchmarks/multi_gpu.py --tiny                # CPU dry run (gloo, cpu "devices")
Prints one JSON line at the end; --out FILE also writes it.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import torch

EIGHT_B = dict(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
               vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0, tie_word_embeddings=True)
TINY = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
            max_position_embeddings=512, tie_word_embeddings=True)


def save_model(path: str, layers: int, tiny: bool) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(num_hidden_layers=layers, **(TINY if tiny else EIGHT_B))
    torch.manual_seed(0)
    with torch.device("cpu" if tiny or not torch.cuda.is_available() else "cuda:0"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(path)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the DP ranks need GPU 0 as free as the others


def load_model(path: str):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).eval()


def make_samples(a: argparse.Namespace) -> torch.Tensor:
    vocab = (TINY if a.tiny else EIGHT_B)["vocab_size"]
    return torch.randint(2, vocab, (a.nsamples, a.seqlen), generator=torch.Generator().manual_seed(1))


def options(a: argparse.Namespace, **over) -> dict:
    o = dict(iters=a.iters, nsamples=a.nsamples, seqlen=a.seqlen, batch_size=a.batch_size, seed=42)
    o.update(over)
    return o


def block_seconds(qmodel, wall: float) -> dict:
    """Per-block seconds from the stats (all phases), median over blocks after the first; without
    per-block stats, the wall time of quantize() over the number of blocks."""
    per = [round(sum(b.get("seconds", {}).values()), 2) for b in qmodel.stats.get("blocks", [])]
    if not any(per):
        return {"per_block": None, "median_s_per_block": round(wall / max(1, len(per)), 2), "from": "wall"}
    later = per[1:] or per
    return {"per_block": per, "median_s_per_block": round(statistics.median(later), 2)}


def layers_of(qmodel) -> dict:
    return {n: (x.codes.cpu(), x.scale.cpu(), x.zero.cpu() if x.zero is not None else None)
            for n, x in qmodel.layers.items()}


def differing(a: dict, b: dict) -> list[str]:
    def same(x, y):
        return (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
    return sorted(n for n in a if n not in b or not all(same(x, y) for x, y in zip(a[n], b[n])))


def peak_gb(devices: list[str]) -> dict:
    return {d: round(torch.cuda.max_memory_allocated(d) / 2**30, 2) for d in devices if d.startswith("cuda")}


# ---- part 1: one GPU vs a block split over GPUs ---------------------------------------------
def run_split(a: argparse.Namespace, path: str, samples: torch.Tensor) -> dict:
    from ar_core import quantize
    main = "cpu" if a.tiny else "cuda:0"
    split_map = "cpu,cpu" if a.tiny else a.device_map
    out = {"device_map": split_map}
    runs = {}
    for name, extra in (("one_device", {}), ("split", {"device_map": split_map})):
        if main.startswith("cuda"):
            for i in range(torch.cuda.device_count()):
                torch.cuda.reset_peak_memory_stats(i)
        model = load_model(path)
        t = time.time()
        q = quantize(model, None, a.scheme, samples, device=main, enable_torch_compile=False,
                     enable_deterministic_algorithms=a.deterministic, **options(a), **extra)
        wall = time.time() - t
        runs[name] = layers_of(q)
        out[name] = {"wall_s": round(wall, 1), **block_seconds(q, wall),
                     "peak_gb": peak_gb([f"cuda:{i}" for i in range(torch.cuda.device_count())])}
        del model, q
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    diff = differing(runs["one_device"], runs["split"])
    out.update(layers=len(runs["one_device"]), layers_differing=len(diff), first_differing=diff[:5],
               identical=not diff)
    return out


# ---- part 2: data-parallel timing -------------------------------------------------------------
def _dp_worker(rank: int, device: str, path: str, samples: torch.Tensor, opts: dict, scheme: str, result: str):
    from ar_core import quantize
    model = load_model(path)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    t = time.time()
    q = quantize(model, None, scheme, samples, device=device, **opts)
    wall = time.time() - t
    if rank == 0:
        torch.save({"wall_s": round(wall, 1), **block_seconds(q, wall), "layers": layers_of(q),
                    "peak_gb": peak_gb([device])}, result)


def run_dp(a: argparse.Namespace, path: str, samples: torch.Tensor, tmp: str) -> dict:
    from ar_core import spawn
    visible = torch.cuda.device_count()
    out: dict = {}
    extra = {} if a.compile is None else {"enable_torch_compile": a.compile}
    for w in [int(x) for x in a.gpus.split(",")]:
        if not a.tiny and w > visible:
            out[f"{w}_gpus"] = f"skipped: {visible} GPU(s) visible"
            continue
        res = os.path.join(tmp, f"dp{w}.pt")
        spawn(_dp_worker, devices_for(a, w), path, samples, options(a, **extra), a.scheme, res)
        r = torch.load(res, weights_only=False)
        out[f"{w}_gpus"] = {k: v for k, v in r.items() if k != "layers"}
        if w == 2:
            out["_layers2"] = r["layers"]
    base = out.get("1_gpus")
    for w in [int(x) for x in a.gpus.split(",")]:
        r = out.get(f"{w}_gpus")
        if isinstance(base, dict) and isinstance(r, dict) and base["median_s_per_block"]:
            r["ratio_to_1_gpu"] = round(r["median_s_per_block"] / base["median_s_per_block"], 3)
    if a.dp_equality and "_layers2" in out:
        ref = os.path.join(tmp, "ref.pt")
        spawn(_dp_worker, devices_for(a, 1), path, samples,
              options(a, batch_size=a.batch_size // 2, gradient_accumulate_steps=2, **extra), a.scheme, ref)
        diff = differing(out["_layers2"], torch.load(ref, weights_only=False)["layers"])
        out["dp2_vs_1gpu_half_batch_x2_accum"] = {"layers_differing": len(diff), "first_differing": diff[:5]}
    out.pop("_layers2", None)
    return out


def devices_for(a: argparse.Namespace, w: int) -> list[str]:
    return ["cpu"] * w if a.tiny else [f"cuda:{i}" for i in range(w)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="split,dp")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--gpus", default="1,2,4", help="data-parallel world sizes to time (more than visible: skipped)")
    ap.add_argument("--device_map", default="auto", help="split part: auto, 0,1 or JSON")
    ap.add_argument("--scheme", default="W4A16")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--compile", type=lambda s: s == "1", default=None, help="dp part: 1/0 forces torch.compile")
    ap.add_argument("--dp_equality", action="store_true", help="also compare 2 GPUs with 1 GPU at half batch x 2")
    ap.add_argument("--tiny", action="store_true", help="CPU dry run on a tiny model")
    ap.add_argument("--deterministic", action="store_true",
                    help="split part: enable_deterministic_algorithms on both sides (needs CUBLAS_WORKSPACE_CONFIG=:4096:8)")
    ap.add_argument("--out", help="also write the JSON here")
    a = ap.parse_args()
    if a.tiny:
        a.nsamples, a.seqlen, a.iters = min(a.nsamples, 8), min(a.seqlen, 32), min(a.iters, 4)
        a.batch_size = min(a.batch_size, 4)
    import logging
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    tmp = tempfile.mkdtemp(dir=os.environ.get("TMPDIR", "/tmp"))
    path = os.path.join(tmp, "model")
    t = time.time()
    save_model(path, a.layers, a.tiny)
    samples = make_samples(a)
    res: dict = {"model": "tiny" if a.tiny else "llama-3-8b-shaped", "layers": a.layers, "scheme": a.scheme,
                 "iters": a.iters, "nsamples": a.nsamples, "seqlen": a.seqlen, "batch_size": a.batch_size,
                 "gpus_visible": torch.cuda.device_count(), "build_s": round(time.time() - t, 1),
                 "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
    if "split" in a.parts:
        res["split"] = run_split(a, path, samples)
        print("split:", json.dumps(res["split"]), flush=True)
    if "dp" in a.parts:
        res["dp"] = run_dp(a, path, samples, tmp)
        print("dp:", json.dumps(res["dp"]), flush=True)
    line = json.dumps(res)
    print(line)
    if a.out:
        with open(a.out, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()

"""``import ar_kernels`` loads torch (+ safetensors) only: no other ar_*, transformers, triton, IPEX or CUDA init."""
from __future__ import annotations

import json
import subprocess
import sys

CODE = """
import json, sys
import ar_kernels
import torch
mods = sorted(sys.modules)
print(json.dumps({
    "ar": [m for m in mods if m.startswith("ar_") and not m.startswith("ar_kernels")],
    "heavy": [m for m in mods if m.split(".")[0] in ("transformers", "triton", "intel_extension_for_pytorch",
                                                     "habana_frameworks", "datasets", "lm_eval", "gguf")],
    "cuda_init": torch.cuda.is_initialized(),
    "backends": sorted(ar_kernels.BACKENDS),
}))
"""


def test_import_is_lean() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["ar"] == [], info["ar"]
    assert info["heavy"] == [], info["heavy"]
    assert info["cuda_init"] is False
    # optional backends are declared (so auto selection can hint at them) without importing them
    assert {"torch:int", "triton:int", "ipex:int", "hpu:int", "torch:float"} <= set(info["backends"])

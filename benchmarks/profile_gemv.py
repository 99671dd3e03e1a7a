"""Run the decode GEMV a few times for a profiler (``ncu --kernel-name regex:gemv python profile_gemv.py``)."""
import torch
from ar_kernels import TritonIntLinear
from kernel_bench import build_layer

layer = build_layer(TritonIntLinear, 4096, 14336, 4, 128, torch.bfloat16)
x = torch.randn(1, 4096, device="cuda", dtype=torch.bfloat16)
for _ in range(5):
    layer(x)
torch.cuda.synchronize()

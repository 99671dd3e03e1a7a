"""CPU and CUDA give the same bits for every quantizer (run with ``pytest -m gpu`` on a GPU box)."""
from __future__ import annotations

import pytest
import torch

from ar_schemes import get_quantizer, get_scheme, quantize, scale_shape

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

NAMES = ["W4A16", "W3A16G64", "W2A16G32", "MXFP4", "MXFP4_RCEIL", "MXFP8", "MXFP8_RCEIL", "NVFP4",
         "FPW8A16", "FP8_STATIC", "FP8_BLOCK"]
SPECS = [*NAMES, {"scheme": "W4A16", "sym": False}, {"scheme": "W3A16G64", "sym": False},
         {"scheme": "W8A16", "sym": False, "group_size": -1}]


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_cuda_matches_cpu_bit_for_bit(spec):
    s = get_scheme(spec)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 1000, generator=g) * torch.logspace(-4, 1, 64).unsqueeze(1)
    ss = scale_shape(tuple(w.shape), s)
    v = (torch.rand(w.shape, generator=g) - 0.5) * 0.8
    mn, mx = 0.6 + 0.4 * torch.rand(ss, generator=g), 0.6 + 0.4 * torch.rand(ss, generator=g)
    cpu = quantize(w, s, v, mn, mx)
    learn = [t.cuda().requires_grad_() for t in (v, mn, mx)]
    gpu = quantize(w.cuda(), s, *learn)
    gpu.dequant.sum().backward()
    assert torch.equal(cpu.dequant, gpu.dequant.detach().cpu())
    assert torch.equal(cpu.codes.float(), gpu.codes.cpu().float())
    assert torch.equal(cpu.scale, gpu.scale.detach().cpu())
    for k in cpu.extra:
        assert torch.equal(cpu.extra[k].float(), gpu.extra[k].cpu().float())
    assert all(torch.isfinite(t.grad).all() for t in learn)
    back = get_quantizer(s.data_type).dequantize(gpu.codes, gpu.scale.detach(), gpu.zero, s,
                                                 gpu.global_scale, gpu.extra)
    assert torch.equal(back, gpu.dequant.detach())

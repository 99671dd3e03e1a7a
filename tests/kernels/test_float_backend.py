"""FP8 / MXFP4 / MXFP8 / NVFP4 layers (emulated): the decoded weight equals ar_schemes' dequantize."""
from __future__ import annotations

import pytest
import torch

from ar_kernels import LayerDesc, TorchFloatLinear
from ar_kernels.packing import fp4

schemes = pytest.importorskip("ar_schemes")

CASES = {  # preset -> (data_type, packing, group_size, block)
    "MXFP4": ("mx_fp", "mx_fp4", 32, None), "MXFP8": ("mx_fp", "mx_fp8", 32, None),
    "NVFP4": ("nv_fp", "nv_fp4", 16, None), "FP8_STATIC": ("fp", "fp8", -1, None),
    "FPW8A16": ("fp", "fp8", 0, None), "FP8_BLOCK": ("fp", "fp8", -1, (128, 128)),
}


def _state_dict(r, packing: str) -> dict[str, torch.Tensor]:
    if packing in ("mx_fp4", "nv_fp4"):
        sd = {"weight_packed": fp4.pack_fp4(r.codes)}
    else:
        sd = {"weight": r.codes}
    if packing.startswith("mx"):
        sd["weight_scale"] = r.extra["scale_e8m0"]
    elif packing == "nv_fp4":
        sd.update(weight_scale=r.extra["scale_e4m3"], weight_global_scale=r.global_scale.reshape(1).float())
    else:
        sd["weight_scale"] = r.scale.float()
    return sd


@pytest.mark.parametrize("preset", list(CASES))
def test_float_layer_matches_schemes(preset: str) -> None:
    data_type, packing, group, block = CASES[preset]
    scheme = schemes.get_scheme(preset)
    w = torch.randn(256, 384, generator=torch.Generator().manual_seed(0))
    r = schemes.quantize(w, scheme)
    ql = schemes.QuantizedLayer.from_result("x", scheme, r)
    desc = LayerDesc(in_features=384, out_features=256, bits=scheme.bits, group_size=group, sym=True,
                     data_type=data_type, packing=packing, dtype=torch.bfloat16, act_bits=scheme.act_bits,
                     block_size=block)
    layer = TorchFloatLinear(desc, device="meta")
    sd = _state_dict(r, packing)
    if packing == "nv_fp4":
        sd["input_global_scale"] = torch.ones(1)
    if "input_scale" in dict(layer.named_buffers()):
        sd["input_scale"] = torch.ones(1)
    layer.load_state_dict(sd, assign=True)
    layer.post_init()
    assert torch.equal(layer.dequantize(torch.float32), ql.dequantize(torch.float32))
    x = torch.randn(3, 384).bfloat16()
    assert torch.equal(layer(x), torch.nn.functional.linear(x, ql.dequantize(torch.bfloat16)))

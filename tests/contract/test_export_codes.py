"""Contract: what an exporter packs, the shared ar_kernels.packing layout unpacks to the reference
quantizer's codes, zero points and scales bit for bit (float64 reference of tests/schemes too)."""
from __future__ import annotations

import pytest
import torch
from conftest import tiny_model
from export.qmodels import quantize_model
from export.readers import load_tensors
from schemes.reference import int_ref

import ar_export
from ar_kernels.packing import awq, compressed, fp4, gptq
from ar_schemes import get_scheme, quantize

INT_CASES = [("auto_round", "W4A16"), ("auto_round", "W2A16G64"), ("auto_round", "W8A16"),
             ("auto_round", {"scheme": "W3A16", "sym": False}), ("auto_round", {"scheme": "W4A16", "sym": False}),
             ("auto_gptq", "W3A16"), ("auto_gptq", {"scheme": "W8A16", "sym": False}), ("auto_awq", "W4A16"),
             ("llm_compressor", "W4A16"), ("llm_compressor", {"scheme": "W6A16", "sym": False, "group_size": 32})]


def _unpack_int(fmt: str, t: dict, name: str, bits: int, shape: tuple[int, int], qc_packing: str | None):
    """(codes (out, in), zero (out, ngroups) or None, scale (out, ngroups)) through ar_kernels.packing."""
    out_f, in_f = shape
    if fmt == "llm_compressor":
        codes = compressed.unpack_int(t[f"{name}.weight_packed"], bits, shape)
        zp = t.get(f"{name}.weight_zero_point")
        ngroups = t[f"{name}.weight_scale"].shape[1]
        zero = None if zp is None else compressed.unpack_int(zp, bits, (out_f, ngroups), dim=0).to(torch.int32)
        return codes, zero, t[f"{name}.weight_scale"].float()
    if fmt == "auto_awq" or qc_packing == "auto_round:auto_awq":
        codes = awq.unpack(t[f"{name}.qweight"]).t()
        return codes, awq.unpack(t[f"{name}.qzeros"]).t().to(torch.int32), t[f"{name}.scales"].float().t()
    offset = 0 if qc_packing == "auto_round" else 1
    codes = gptq.unpack_qweight(t[f"{name}.qweight"], bits, in_f)
    zero = gptq.unpack_qzeros(t[f"{name}.qzeros"], bits, out_f, offset=offset)
    return codes, zero, t[f"{name}.scales"].float().t()


@pytest.mark.parametrize("fmt,scheme", INT_CASES, ids=str)
def test_unpacked_int_codes_are_the_quantizers(fmt, scheme, tmp_path):
    import json
    model = tiny_model("llama", hidden=128)
    originals = {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    qmodel = quantize_model(model, scheme)
    ar_export.save(qmodel, model, None, tmp_path, fmt)
    qc = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    t = load_tensors(tmp_path)
    s = get_scheme(scheme)
    for name, layer in qmodel.layers.items():
        r = quantize(originals[name], s)
        _, q64, scale64, zero64 = int_ref(originals[name], s.bits, s.sym, s.group_size)
        codes, zero, scale = _unpack_int(fmt, t, name, s.bits, layer.shape, qc.get("packing_format"))
        assert torch.equal(codes, r.codes.to(torch.uint8)) and torch.equal(codes.double(), q64), name
        assert torch.equal(scale, r.scale) and torch.equal(scale.double(), scale64), name
        if zero is None:  # compressed-tensors sym: the zero point is implied (2^(b-1))
            assert torch.all(r.zero == 2 ** (s.bits - 1))
        elif fmt == "llm_compressor":  # signed zero points shifted by 2^(b-1): the same unsigned values
            assert torch.equal(zero, r.zero.to(torch.int32))
        else:
            assert torch.equal(zero, r.zero.to(torch.int32)) and torch.equal(zero.double(), zero64), name


@pytest.mark.parametrize("fmt,scheme", [("auto_round", "MXFP4"), ("llm_compressor", "MXFP4"),
                                        ("llm_compressor", {"scheme": "NVFP4", "act_bits": 16})], ids=str)
def test_unpacked_fp4_codes_are_the_quantizers(fmt, scheme, tmp_path):
    model = tiny_model("llama", hidden=128)
    originals = {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    qmodel = quantize_model(model, scheme)
    ar_export.save(qmodel, model, None, tmp_path, fmt)
    t = load_tensors(tmp_path)
    s = get_scheme(scheme)
    for name in qmodel.layers:
        r = quantize(originals[name], s)
        assert torch.equal(fp4.unpack_fp4(t[f"{name}.weight_packed"]), r.codes.to(torch.uint8)), name
        key = "scale_e4m3" if s.data_type == "nv_fp" else "scale_e8m0"
        assert torch.equal(t[f"{name}.weight_scale"].view(torch.uint8), r.extra[key].view(torch.uint8)), name
        if s.data_type == "nv_fp":
            assert torch.equal(t[f"{name}.weight_global_scale"], r.global_scale.float().reshape(1))

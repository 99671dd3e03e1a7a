"""Backend selection: the best installed backend per layer, hints, forced backends and their errors."""
from __future__ import annotations

import logging

import pytest
import torch

import ar_kernels
from ar_kernels import BACKENDS, BackendError, BackendSpec, LayerDesc, register_backend, select_backend
from ar_kernels.backends.torch import TorchIntLinear
from ar_kernels.registry import _HINTED

W4 = LayerDesc(in_features=256, out_features=64, bits=4, group_size=128, sym=True, dtype=torch.bfloat16)


def test_cpu_picks_torch() -> None:
    assert select_backend(W4, "cpu").name == "torch:int"


def test_cuda_prefers_triton_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BackendSpec, "missing_requirements", lambda self: [])
    monkeypatch.setattr(torch.version, "cuda", None)  # a CPU-only torch: no NVRTC kernels
    assert select_backend(W4, "cuda").name == "triton:int"
    assert select_backend(W4, "cuda:1", backend="torch").name == "torch:int"


def test_cuda_build_prefers_nvrtc_kernels_for_4_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BackendSpec, "missing_requirements", lambda self: [])
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    assert select_backend(W4, "cuda").name == "cuda:int"
    d8 = LayerDesc(in_features=256, out_features=64, bits=8, group_size=128, sym=True, dtype=torch.bfloat16)
    assert select_backend(d8, "cuda").name == "triton:int"
    odd = LayerDesc(in_features=96, out_features=64, bits=4, group_size=32, sym=True, dtype=torch.bfloat16)
    assert select_backend(odd, "cuda").name == "triton:int"  # in_features not a multiple of 64
    assert select_backend(W4, "cuda", backend="tinygemm").name == "tinygemm:int"


def test_three_bit_falls_back_to_torch_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BackendSpec, "missing_requirements", lambda self: [])
    d3 = LayerDesc(in_features=256, out_features=64, bits=3, group_size=128, sym=True, dtype=torch.float16)
    assert select_backend(d3, "cuda").name == "torch:int"


def test_forced_backend_that_cannot_serve_explains(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendError, match="triton:int: .*device 'cpu'"):
        select_backend(W4, "cpu", backend="triton")
    d3 = LayerDesc(in_features=256, out_features=64, bits=3, group_size=128, dtype=torch.float16)
    with pytest.raises(BackendError, match=r"bits=3 not in \(2, 4, 8\)"):
        select_backend(d3, "cuda", backend="triton")


def test_unknown_backend_lists_choices() -> None:
    with pytest.raises(BackendError, match="valid choices: auto, .*torch"):
        select_backend(W4, "cpu", backend="cutlass")


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BackendSpec, "missing_requirements", lambda self: list(self.requirements))
    with pytest.raises(BackendError, match=r'pip install "ar-kernels\[triton\]"'):
        select_backend(W4, "cuda", backend="triton")


def test_hint_when_better_backend_not_installed(monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(BackendSpec, "missing_requirements", lambda self: list(self.requirements))
    monkeypatch.setattr(torch.version, "cuda", None)
    _HINTED.discard("triton:int")
    with caplog.at_level(logging.INFO, logger="ar"):
        assert select_backend(W4, "cuda").name == "torch:int"
        select_backend(W4, "cuda")
    hints = [r.message for r in caplog.records if "would be faster" in r.message]
    assert len(hints) == 1 and 'ar-kernels[triton]' in hints[0]


def test_auto_never_picks_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert select_backend(W4, "cpu").name == "torch:int"
    assert select_backend(W4, "cpu", backend="triton").name == "triton:int"


def test_shape_check_rejects() -> None:
    odd = LayerDesc(in_features=100, out_features=64, bits=4, group_size=-1, dtype=torch.float16)
    spec = BACKENDS["triton:int"]
    assert any("multiple of 32" in r for r in spec.reasons(odd, "cuda"))


def test_act_order_goes_to_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BackendSpec, "missing_requirements", lambda self: [])
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    act = LayerDesc(in_features=256, out_features=64, bits=4, group_size=128, sym=True, dtype=torch.bfloat16,
                    g_idx=True)
    for name in ("cuda:int", "triton:int", "tinygemm:int"):
        assert "g_idx (act-order) checkpoints need the torch backend" in BACKENDS[name].reasons(act, "cuda")
        assert not BACKENDS[name].reasons(W4, "cuda")
    assert select_backend(act, "cuda").name == "torch:int"


def test_register_a_new_backend() -> None:
    @register_backend(BackendSpec(name="mine:int", devices=("cpu",), bits=(4,), packings=("gptq",), priority=99))
    class MineIntLinear(TorchIntLinear):
        pass
    try:
        assert select_backend(W4, "cpu") is MineIntLinear.spec
        assert select_backend(W4, "cpu", backend="mine").linear is MineIntLinear
    finally:
        BACKENDS.pop("mine:int")


def test_bad_layer_desc() -> None:
    with pytest.raises(BackendError, match="unknown packing 'exl2'"):
        LayerDesc(in_features=32, out_features=32, bits=4, group_size=32, packing="exl2")


def test_public_surface() -> None:
    for name in ar_kernels.__all__:
        assert hasattr(ar_kernels, name), name

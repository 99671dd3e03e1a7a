"""GGUF: the exporter's packing and the gguf package's dequantizers (the loader of llama.cpp files)
agree with our reference quantizers bit for bit, for every ggml type we write."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ar_kernels.packing.gguf import BLOCK_SIZES, pack
from ar_schemes import QuantizedLayer, ggml_scheme, quantize

gguf = pytest.importorskip("gguf")


def _weights(rows: int, cols: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * torch.rand(rows, 1, generator=g) * 0.05
    w[0] = 0  # all-zero rows
    w[1] = w[1].abs()  # no negative weight: min 0
    w[2] = -w[2].abs()  # no positive weight
    w[3, ::7] *= 30  # outliers
    w[4, :64] = 1e-6  # tiny block next to normal ones
    return w


def _parts(layer: QuantizedLayer) -> dict[str, torch.Tensor]:
    e = layer.extra
    if layer.scheme.data_type == "int_ggml":
        return {"d": layer.scale} | ({"m": e["min"]} if "min" in e else {})
    return {"sc": e["sc"], "d": e["d"]} | ({"m": e["m"], "dmin": e["dmin"]} if "dmin" in e else {})


@pytest.mark.parametrize("qtype", sorted(BLOCK_SIZES))
@pytest.mark.parametrize("seed", [0, 1])
def test_packed_bytes_dequantize_to_our_values(qtype, seed):
    scheme = ggml_scheme(qtype)
    w = _weights(8, 768, seed)
    v = (torch.rand(w.shape, generator=torch.Generator().manual_seed(seed)) - 0.5) * 0.6  # tuned rounding
    layer = QuantizedLayer.from_result("x", scheme, quantize(w, scheme, v=v))
    data = pack(qtype, layer.codes, **_parts(layer))
    block, size = BLOCK_SIZES[qtype]
    assert data.dtype == torch.uint8 and tuple(data.shape) == (8, 768 // block * size)
    theirs = gguf.quants.dequantize(data.numpy(), gguf.GGMLQuantizationType[qtype.upper()])
    assert np.array_equal(theirs, layer.dequantize().numpy())


def test_rows_not_whole_blocks_are_refused():
    layer = QuantizedLayer.from_result("x", ggml_scheme("q4_k"), quantize(torch.randn(2, 288), ggml_scheme("q4_k")))
    with pytest.raises(ValueError, match="multiple of 256"):
        pack("q4_k", layer.codes, **_parts(layer))

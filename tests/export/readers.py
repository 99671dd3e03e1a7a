"""Independent readers of the public GPTQ and AWQ layouts, written from the format descriptions
(not from ar_kernels.packing), to check our exporters against a second implementation."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

AWQ_NIBBLE_TO_COLUMN = [0, 2, 4, 6, 1, 3, 5, 7]  # AutoAWQ packs column ORDER[i] into nibble i


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    index = path / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() \
        else ["model.safetensors"]
    out: dict[str, torch.Tensor] = {}
    for f in files:
        out.update(load_file(str(path / f)))
    return out


def bitstream_rows(words: np.ndarray, bits: int, n: int) -> np.ndarray:
    """(rows, nwords) int32 -> (rows, n): unpack LSB-first bits and regroup them ``bits`` at a time."""
    raw = np.ascontiguousarray(words.astype("<i4")).view(np.uint8)
    stream = np.unpackbits(raw, axis=1, bitorder="little")[:, : n * bits]
    return stream.reshape(words.shape[0], n, bits) @ (1 << np.arange(bits))


def gptq_dequant(t: dict[str, torch.Tensor], name: str, bits: int, in_f: int, zero_offset: int = 1) -> torch.Tensor:
    """W (out, in) = (q - (qzero + offset)) * scale[g_idx] from qweight / qzeros / scales."""
    qweight, qzeros, scales = (t[f"{name}.{k}"] for k in ("qweight", "qzeros", "scales"))
    out_f = scales.shape[1]
    q = bitstream_rows(qweight.t().numpy(), bits, in_f)  # (out, in)
    z = bitstream_rows(qzeros.numpy(), bits, out_f).T + zero_offset  # (out, ngroups)
    g = t.get(f"{name}.g_idx")
    gidx = g.long().numpy() if g is not None else np.arange(in_f) * scales.shape[0] // in_f
    s = scales.float().numpy().T  # (out, ngroups)
    return torch.from_numpy((q - z[:, gidx]) * s[:, gidx]).float()


def awq_unpack(packed: torch.Tensor) -> np.ndarray:
    w = packed.numpy().astype(np.int64) & 0xFFFFFFFF
    out = np.zeros((w.shape[0], w.shape[1], 8), dtype=np.int64)
    for nibble, col in enumerate(AWQ_NIBBLE_TO_COLUMN):
        out[:, :, col] = (w >> (4 * nibble)) & 0xF
    return out.reshape(w.shape[0], -1)


def awq_dequant(t: dict[str, torch.Tensor], name: str, group_size: int) -> torch.Tensor:
    """W (out, in) = (q - zero) * scale, AWQ's (in, out) tensors transposed back."""
    q = awq_unpack(t[f"{name}.qweight"])  # (in, out)
    z = awq_unpack(t[f"{name}.qzeros"])  # (ngroups, out)
    s = t[f"{name}.scales"].float().numpy()
    g = np.arange(q.shape[0]) // group_size
    return torch.from_numpy(((q - z[g]) * s[g]).T).float()


def load_dequantized(path: Path, model: torch.nn.Module, dequant) -> torch.nn.Module:
    """Put every packed layer's dequantized weight into ``model`` (a fresh copy of the architecture)."""
    t = load_tensors(path)
    sd = {k: v for k, v in t.items() if k.rsplit(".", 1)[-1] not in ("qweight", "qzeros", "scales", "g_idx")}
    for name in {k.rsplit(".", 1)[0] for k in t if k.endswith(".qweight")}:
        w = dequant(t, name)  # (out, in); GPT-2 Conv1D keeps (in, out)
        conv1d = type(model.get_submodule(name)).__name__ == "Conv1D"
        sd[f"{name}.weight"] = w.t().contiguous() if conv1d else w
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert all("lm_head" in k or "rotary" in k for k in missing), missing
    return model

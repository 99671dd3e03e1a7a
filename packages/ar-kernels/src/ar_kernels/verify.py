"""Check a checkpoint's safetensors files before loading: a truncated file, a tensor whose bytes
do not match its declared dtype and shape, or a tensor the index names but no file holds is
refused with the tensor named, instead of being zero-filled or failing deep inside a loader."""
from __future__ import annotations

import json
import math
from pathlib import Path

from .errors import CheckpointError

_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
             "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}


def verify_checkpoint(path: str | Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every tensor of the checkpoint directory as {name: (dtype, shape)}, after the checks."""
    path = Path(path)
    index = path / "model.safetensors.index.json"
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{path}: no .safetensors file found")
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    for f in files:
        tensors.update(_verify_file(f))
    if index.exists():
        for name, fname in json.loads(index.read_text())["weight_map"].items():
            if name not in tensors:
                raise CheckpointError(f"{path}: tensor {name!r} is listed in the index (file {fname}) but missing")
    return tensors


def _verify_file(f: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    size = f.stat().st_size
    with open(f, "rb") as fh:
        raw = fh.read(8)
        n = int.from_bytes(raw, "little") if len(raw) == 8 else -1
        if n < 0 or 8 + n > size:
            raise CheckpointError(f"{f}: truncated: the safetensors header is incomplete ({size} bytes on disk)")
        header = json.loads(fh.read(n))
    data = size - 8 - n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype, shape = meta["dtype"], tuple(meta["shape"])
        start, end = meta["data_offsets"]
        want = math.prod(shape) * _ITEMSIZE.get(dtype, 1)
        if end - start != want:
            raise CheckpointError(f"{f.name}: tensor {name!r} declares {dtype}{list(shape)} ({want} bytes) but "
                                  f"stores {end - start} bytes")
        if end > data:
            raise CheckpointError(f"{f.name}: tensor {name!r} is truncated: it needs bytes up to {end} of the data "
                                  f"section, the file holds {data}; re-export or re-download the checkpoint")
        out[name] = (dtype, shape)
    return out

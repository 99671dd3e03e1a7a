"""Per-block checkpoints so an interrupted run continues from the last finished block.

Layout of the work directory: ``manifest.json`` (what run this is), ``block_XXXX.pt`` (the
quantized layers of each finished block) and ``progress.json``. Every file is written to a
temporary name and renamed into place. Activations are not kept: on resume the calibration
inputs are run through the finished blocks again (forward only, seconds).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ar_schemes import QuantizedLayer, QuantScheme

from .errors import QuantizeError


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _layer_state(layer: QuantizedLayer) -> dict[str, Any]:
    return {"name": layer.name, "scheme": layer.scheme.to_dict(), "codes": layer.codes, "scale": layer.scale,
            "zero": layer.zero, "global_scale": layer.global_scale, "extra": layer.extra, "bias": layer.bias}


def _layer_from_state(s: dict[str, Any]) -> QuantizedLayer:
    return QuantizedLayer(name=s["name"], scheme=QuantScheme.from_dict(s["scheme"]), codes=s["codes"],
                          scale=s["scale"], zero=s["zero"], global_scale=s["global_scale"], extra=s["extra"],
                          bias=s["bias"])


class WorkDir:
    """The resume state of one run."""

    def __init__(self, path: str | os.PathLike[str], fingerprint: dict[str, Any]) -> None:
        self.path = Path(path)
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))

    def start(self, resume: bool) -> int:
        """Prepare the directory; returns the index of the first block still to do."""
        self.path.mkdir(parents=True, exist_ok=True)
        manifest = self.path / "manifest.json"
        if resume and manifest.exists():
            found = json.loads(manifest.read_text())
            if found != self.fingerprint:
                diff = sorted(k for k in set(found) | set(self.fingerprint) if found.get(k) != self.fingerprint.get(k))
                raise QuantizeError(f"cannot resume: the run in {self.path} used other settings ({', '.join(diff)}); "
                                    "rerun with the same options or without --resume")
            return self.finished_blocks()
        for f in [*self.path.glob("*.pt"), self.path / "progress.json"]:
            f.unlink(missing_ok=True)
        manifest.write_text(json.dumps(self.fingerprint, indent=1, sort_keys=True))
        return 0

    def finished_blocks(self) -> int:
        progress = self.path / "progress.json"
        return json.loads(progress.read_text())["finished"] if progress.exists() else 0

    def save_block(self, index: int, layers: list[QuantizedLayer], stats: dict[str, Any]) -> None:
        """Block file, then the progress marker: a kill between the two resumes at this block.
        Activations are not saved: a resumed run recomputes them through the finished blocks."""
        _atomic_save({"layers": [_layer_state(x) for x in layers], "stats": stats},
                     self.path / f"block_{index:04d}.pt")
        tmp = self.path / "progress.json.tmp"
        tmp.write_text(json.dumps({"finished": index + 1}))
        os.replace(tmp, self.path / "progress.json")

    def load_block(self, index: int) -> tuple[list[QuantizedLayer], dict[str, Any]]:
        state = torch.load(self.path / f"block_{index:04d}.pt", weights_only=False)
        return [_layer_from_state(s) for s in state["layers"]], state["stats"]

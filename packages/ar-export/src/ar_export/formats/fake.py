"""fake: dequantized weights in the model dtype; plain transformers loads it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ar_schemes import QuantizedModel

from ..base import Exporter, register_format
from .common import save_hf_extras


@register_format("fake")
class FakeExporter(Exporter):
    """Any scheme: the weights are written dequantized, so every loader reads them."""

    def write(self, qmodel: QuantizedModel, model: Any, tokenizer: Any, out_dir: Path, **options: Any) -> None:
        modules = dict(model.named_modules())
        dtype = next(model.parameters()).dtype
        with torch.no_grad():
            for name, layer in qmodel.layers.items():
                mod = modules[name]
                w = layer.dequantize(dtype)
                mod.weight.data = w.t().contiguous() if _is_conv1d(mod) else w
        model.save_pretrained(out_dir, max_shard_size=options.get("max_shard_size", "5GB"))
        save_hf_extras(model, tokenizer, out_dir)


def _is_conv1d(mod: torch.nn.Module) -> bool:
    return type(mod).__name__ == "Conv1D"

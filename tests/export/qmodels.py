"""Build a QuantizedModel straight from a tiny model (no tuning): RTN codes from ar_schemes, and
the model's weights replaced by their dequantized values, as ar-core leaves them."""
from __future__ import annotations

import re
from typing import Any

import torch

from ar_schemes import QuantizedLayer, QuantizedModel, get_scheme, quantize, resolve_layer_schemes


def block_names(model: torch.nn.Module) -> list[str]:
    return [n for n, _ in model.named_modules() if re.fullmatch(r".*(layers|\.h)\.\d+", n)]


def quantize_model(model: torch.nn.Module, scheme: Any = "W4A16", layer_config: dict | None = None,
                   ignore: tuple[str, ...] = ("lm_head",)) -> QuantizedModel:
    """Quantize every Linear in place (fake-quant) and return the hand-off record."""
    default = get_scheme(scheme)
    modules = dict(model.named_modules())
    names = [n for n, m in modules.items() if isinstance(m, torch.nn.Linear) or _is_conv1d(m)]
    schemes = resolve_layer_schemes(names, default, layer_config, ignore)
    layers, skipped = {}, {}
    with torch.no_grad():
        for name, s in schemes.items():
            mod = modules[name]
            if s is None:
                skipped[name] = "ignored"
                continue
            w = mod.weight.detach().float()
            r = quantize(w.t() if _is_conv1d(mod) else w, s)  # GPT-2 Conv1D stores (in, out)
            layers[name] = QuantizedLayer.from_result(name, s, r, mod.bias)
            dq = r.dequant.t() if _is_conv1d(mod) else r.dequant
            mod.weight.data = dq.contiguous().to(mod.weight.dtype)
    return QuantizedModel(layers, default, block_names=block_names(model), skipped=skipped,
                          options={"iters": 0})


def _is_conv1d(mod: torch.nn.Module) -> bool:
    return type(mod).__name__ == "Conv1D"


def logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits.float()


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|: the relative logit difference the acceptance criteria use."""
    return float((a - b).abs().max() / b.abs().max())

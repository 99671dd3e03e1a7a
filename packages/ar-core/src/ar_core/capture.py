"""Capturing what each decoder block receives: block-0 hidden states and every block's kwargs.

Every block's forward is swapped for a recorder that stores its keyword arguments and passes
the hidden states through untouched, and the last one aborts the model forward. So one cheap
pass (embeddings only) yields block 0's inputs and the kwargs of every block; those differ per
block in models with mixed attention (Gemma3: sliding and full layers get other masks and
rotary embeddings).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn


class _Stop(Exception):
    pass


@dataclass
class BlockInputs:
    """hidden: (N, seq, hidden) block-0 inputs; kwargs[i]: keyword arguments of block i."""

    hidden: Tensor
    kwargs: list[dict[str, Any]] = field(default_factory=list)


def map_tensors(x: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """``fn`` applied to every tensor inside nested tuples, lists and dicts; other values kept."""
    if isinstance(x, Tensor):
        return fn(x)
    if isinstance(x, tuple):
        return tuple(map_tensors(v, fn) for v in x)
    if isinstance(x, list):
        return [map_tensors(v, fn) for v in x]
    if isinstance(x, dict):
        return {k: map_tensors(v, fn) for k, v in x.items()}
    return x


_DROP = {"past_key_value", "past_key_values", "cache", "use_cache", "output_attentions", "layer_past"}


@torch.no_grad()
def capture_inputs(model: nn.Module, blocks: list[nn.Module], samples: Tensor,
                   device: torch.device | str, cache_device: torch.device | str) -> BlockInputs:
    """Run the embedding part of ``model`` on ``samples`` (N, seq) and record block inputs.

    Samples go one at a time so recorded masks have batch size 1 and broadcast to any batch.
    """
    hidden: list[Tensor] = []
    kwargs: list[dict[str, Any] | None] = [None] * len(blocks)
    originals = [b.forward for b in blocks]

    def recorder(i: int):
        def fwd(*args: Any, **kw: Any) -> Any:
            x = args[0] if args else kw.pop("hidden_states")
            if i == 0:
                hidden.append(x.detach().to(cache_device))
            if kwargs[i] is None:
                kw = {k: v for k, v in kw.items() if k not in _DROP}
                kw.update({f"__arg{j}": a for j, a in enumerate(args[1:], 1)})
                kwargs[i] = map_tensors(kw, lambda t: t.detach().to(cache_device))
            if i == len(blocks) - 1:
                raise _Stop
            return x
        return fwd

    try:
        for i, b in enumerate(blocks):
            b.forward = recorder(i)
        for start in range(samples.shape[0]):
            ids = samples[start:start + 1].to(device)
            try:
                model(input_ids=ids, use_cache=False)
            except _Stop:
                pass
    finally:
        for b, f in zip(blocks, originals):
            b.forward = f
    return BlockInputs(torch.cat(hidden), [k or {} for k in kwargs])


def call_block(block: nn.Module, x: Tensor, kwargs: dict[str, Any]) -> Tensor:
    """Run one block on hidden states ``x`` with its recorded kwargs; returns hidden states."""
    pos = [v for k, v in sorted(kwargs.items()) if k.startswith("__arg")]
    kw = {k: v for k, v in kwargs.items() if not k.startswith("__arg")}
    out = block(x, *pos, **kw)
    return out[0] if isinstance(out, (tuple, list)) else out


def move_kwargs(kwargs: dict[str, Any], device: torch.device | str, dtype: torch.dtype | None = None
                ) -> dict[str, Any]:
    """Kwargs on ``device``; floating tensors other than masks cast to ``dtype``."""
    def mv(k: str, v: Any) -> Any:
        if isinstance(v, Tensor):
            v = v.to(device)
            if dtype is not None and v.is_floating_point() and "mask" not in k:
                v = v.to(dtype)
            return v
        if isinstance(v, (tuple, list)):
            return type(v)(mv(k, x) for x in v)
        return v
    return {k: mv(k, v) for k, v in kwargs.items()}

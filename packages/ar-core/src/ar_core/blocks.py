"""Finding what to quantize in any transformers causal LM: decoder blocks and weight targets.

A *target* is one 2-D weight seen as (rows, in_features): a Linear's weight, a GPT-2 Conv1D's
transposed weight, or a fused MoE expert tensor (experts, out, in) flattened to (experts*out, in).
Grouping runs along in_features only, so quantizing the flattened experts equals quantizing
each expert on its own.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .errors import QuantizeError

_EXPERT_PARAMS = ("gate_up_proj", "down_proj", "up_proj", "gate_proj")


@dataclass
class Target:
    """One quantizable weight: ``module.<attr>`` with a 2-D (rows, in) view."""

    name: str
    module: nn.Module
    attr: str = "weight"
    kind: str = "linear"  # linear | conv1d | experts

    def __post_init__(self) -> None:
        self.param_shape = tuple(self.param.shape)  # kept: the parameter is swapped out while tuning

    @property
    def param(self) -> Tensor:
        return getattr(self.module, self.attr)

    @property
    def shape(self) -> tuple[int, int]:
        p = self.param_shape
        if self.kind == "conv1d":
            return (p[1], p[0])
        if self.kind == "experts":
            return (p[0] * p[1], p[2])
        return (p[0], p[1])

    def weight2d(self) -> Tensor:
        """The weight as (rows, in) in its own dtype (a view where possible)."""
        p = self.param.detach()
        if self.kind == "conv1d":
            return p.t()
        return p.reshape(self.shape)

    def to_layout(self, w2d: Tensor) -> Tensor:
        """Inverse of :meth:`weight2d`: a (rows, in) tensor in the parameter's layout."""
        if self.kind == "conv1d":
            return w2d.t()
        return w2d.reshape(self.param_shape)

    def set_weight(self, w2d: Tensor) -> None:
        p = self.param
        with torch.no_grad():
            p.data = self.to_layout(w2d).to(dtype=p.dtype, device=p.device).contiguous()

    @property
    def bias(self) -> Tensor | None:
        return getattr(self.module, "bias", None) if self.kind != "experts" else None


def find_blocks(model: nn.Module) -> list[str]:
    """Names of the decoder blocks: the longest ModuleList of identical-looking modules."""
    best: tuple[int, str] = (0, "")
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > best[0]:
            kinds = {type(m).__name__ for m in mod}
            if len(kinds) == 1 and any(find_targets(m) for m in mod[:1]):
                best = (len(mod), name)
    if not best[1]:
        raise QuantizeError(f"no decoder blocks found in {type(model).__name__}: ar-core looks for a ModuleList "
                            "of identical blocks containing Linear layers")
    return [f"{best[1]}.{i}" for i in range(best[0])]


def find_targets(module: nn.Module, prefix: str = "") -> list[Target]:
    """Every quantizable weight under ``module``, in module order."""
    out: list[Target] = []
    for name, mod in module.named_modules():
        full = f"{prefix}.{name}" if prefix and name else (prefix or name)
        cls = type(mod).__name__
        if isinstance(mod, nn.Linear):
            out.append(Target(full, mod))
        elif cls == "Conv1D" and hasattr(mod, "nf"):
            out.append(Target(full, mod, kind="conv1d"))
        else:
            for attr in _EXPERT_PARAMS:
                p = mod._parameters.get(attr)
                if p is not None and p.dim() == 3:
                    out.append(Target(f"{full}.{attr}", mod, attr=attr, kind="experts"))
    return out


def get_module(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def lm_head_target(model: nn.Module) -> Target | None:
    """The output projection, or None when the model has none we recognise."""
    head = getattr(model, "lm_head", None) or (model.get_output_embeddings() if hasattr(model, "get_output_embeddings")
                                              else None)
    if not isinstance(head, nn.Linear):
        return None
    name = next(n for n, m in model.named_modules() if m is head)
    return Target(name, head)


def lm_head_is_tied(model: nn.Module) -> bool:
    head, emb = model.get_output_embeddings(), model.get_input_embeddings()
    return head is not None and emb is not None and head.weight is emb.weight

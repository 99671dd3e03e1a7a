"""Bit accounting of quantized weights and the exact budgeted choice of one option per item.

``layer_bits`` counts what the exporters store; ``solve_budget`` is the multiple-choice knapsack
AutoScheme solves (least total loss under a total-bits budget), by dynamic programming with Pareto
pruning.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ar_schemes import QuantScheme, scale_shape

from .errors import QuantizeError


# ---- bits --------------------------------------------------------------------------------------
def layer_bits(shape: tuple[int, int], scheme: QuantScheme | None, ignore_scale_zp_bits: bool = False) -> int:
    """Exact storage in bits of one (out, in) weight under ``scheme`` (None or 16-bit: 16 per weight).

    int: GPTQ/AWQ layouts (what ``auto_round``, ``auto_gptq`` and ``auto_awq`` write): int32 words of
    codes, fp16 scales and packed zero points per group (stored for sym too). MX: 8-bit E8M0 scale
    per 32. NVFP4: E4M3 group scales plus an fp32 global scale. FP8: a 16-bit scale per group.
    GGUF: the ggml block bytes (q4_k: 144 bytes per 256 weights = 4.5 bits).

    >>> from ar_schemes import get_scheme
    >>> layer_bits((4096, 4096), get_scheme("W4A16")) / 4096**2  # 4 + (16 + 4) / 128
    4.15625
    """
    out, inp = shape
    n = out * inp
    if scheme is None or not scheme.is_quantized:
        return 16 * n
    if ignore_scale_zp_bits:
        return scheme.bits * n
    dt, b = scheme.data_type, scheme.bits
    if dt in ("int_dq", "int_ggml"):
        return _ggml_bits(out, inp, scheme)
    g0, g1 = scale_shape(shape, scheme)
    if dt == "int" and g0 == out:  # qweight [in*b/32, out], scales fp16 [g, out], qzeros [g, out*b/32]
        return 32 * out * -(-inp * b // 32) + g1 * (16 * out + 32 * -(-out * b // 32))
    if dt == "int":
        return b * n + g0 * g1 * (16 + b)
    if dt == "nv_fp":
        return b * n + 8 * g0 * g1 + 32
    return b * n + (8 if dt.startswith("mx_fp") else 16) * g0 * g1


def _ggml_bits(out: int, inp: int, s: QuantScheme) -> int:
    """ggml block sizes: fp16 d (and m) per block; k-quants add a super_bits-bit scale (and min) per group."""
    pairs = 1 if s.sym else 2  # scale only, or scale and min
    groups = -(-inp // int(s.group_size))  # type: ignore[call-overload]
    if s.data_type == "int_ggml":
        return out * (inp * s.bits + groups * 16 * pairs)
    return out * (inp * s.bits + groups * int(s.super_bits or 0) * pairs + -(-inp // 256) * 16 * pairs)


def nominal_bits(scheme: QuantScheme, ignore_scale_zp_bits: bool = False) -> float:
    """Bits per weight of ``scheme`` on a 4096 x 4096 weight (GGUF mixes: their base type)."""
    return layer_bits((4096, 4096), scheme, ignore_scale_zp_bits) / 4096 ** 2


def solve_budget(items: Sequence[Sequence[tuple[int, float]]], budget: int) -> list[int]:
    """For each item the index of its chosen (cost, loss) option: least total loss, total cost <= budget.

    Dynamic programming over items; after each item only the Pareto front of partial choices is
    kept (a state survives when no other state costs no more and loses less), and states that cannot
    fit the cheapest options of the items left are dropped. Exact for integer costs.

    >>> solve_budget([[(1, 5.0), (2, 1.0)], [(1, 3.0), (2, 2.0)]], budget=3)
    [1, 0]
    """
    if any(not it for it in items):
        raise QuantizeError("every item needs at least one (cost, loss) option")
    rest = [0] * (len(items) + 1)  # rest[i]: cheapest cost of items i..end
    for i in range(len(items) - 1, -1, -1):
        rest[i] = rest[i + 1] + min(c for c, _ in items[i])
    if rest[0] > budget:
        raise QuantizeError(f"no choice fits: the cheapest options cost {rest[0]} > budget {budget}")
    cost = torch.zeros(1, dtype=torch.int64)
    loss = torch.zeros(1, dtype=torch.float64)
    trail: list[tuple[Tensor, Tensor]] = []
    for i, it in enumerate(items):
        k = len(it)
        cc = (cost[:, None] + torch.tensor([c for c, _ in it], dtype=torch.int64)).reshape(-1)
        ll = (loss[:, None] + torch.tensor([x for _, x in it], dtype=torch.float64)).reshape(-1)
        parent = torch.arange(len(cost), dtype=torch.int32).repeat_interleave(k)
        pick = torch.arange(k, dtype=torch.int16).repeat(len(cost))
        ok = (cc + rest[i + 1] <= budget).nonzero().reshape(-1)
        keep = ok[_pareto(cc[ok], ll[ok])]
        cost, loss = cc[keep], ll[keep]
        trail.append((parent[keep], pick[keep]))
    j = int(torch.argmin(loss))
    choice = []
    for parent, pick in reversed(trail):
        choice.append(int(pick[j]))
        j = int(parent[j])
    return choice[::-1]


def _pareto(cost: Tensor, loss: Tensor) -> Tensor:
    """Positions of the non-dominated states, ordered by cost (loss then strictly decreases)."""
    order = torch.sort(loss, stable=True).indices
    order = order[torch.sort(cost[order], stable=True).indices]  # by cost, ties by loss
    sorted_loss = loss[order]
    best_before = torch.cat([torch.tensor([math.inf], dtype=loss.dtype), torch.cummin(sorted_loss, 0).values[:-1]])
    return order[sorted_loss < best_before]

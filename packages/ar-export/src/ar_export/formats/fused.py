"""Layers that serving runtimes (vLLM, SGLang) fuse into one matmul must share one scheme.

vLLM loads q/k/v into one ``qkv_proj`` and gate/up into one ``gate_up_proj`` with a single
quantization method; a checkpoint with, say, 4-bit q_proj and 8-bit k_proj loads with an error
or wrong results there, a common complaint about the reference. We refuse it before tuning.
"""
from __future__ import annotations

from ar_schemes import QuantScheme

FUSED_GROUPS: tuple[tuple[str, ...], ...] = (
    ("q_proj", "k_proj", "v_proj"),
    ("gate_proj", "up_proj"),
    ("w1", "w3"),
)
_KEYS = ("bits", "group_size", "sym", "data_type", "act_bits", "act_data_type")


def _describe(s: QuantScheme | None) -> str:
    if s is None:
        return "16-bit"
    return f"{s.data_type} {s.bits}-bit g{s.group_size}{'' if s.sym else ' asym'}"


def _signature(s: QuantScheme | None) -> tuple[object, ...] | None:
    return None if s is None else tuple(getattr(s, k) for k in _KEYS)


def fused_group_problems(layer_schemes: dict[str, QuantScheme | None], fmt: str) -> list[str]:
    """One sentence per fused group whose members have different schemes."""
    problems = []
    for leaves in FUSED_GROUPS:
        groups: dict[str, dict[str, QuantScheme | None]] = {}
        for name, s in layer_schemes.items():
            parent, _, leaf = name.rpartition(".")
            if leaf in leaves:
                groups.setdefault(parent, {})[leaf] = s
        for parent, members in groups.items():
            if len({_signature(s) for s in members.values()}) > 1:
                got = ", ".join(f"{leaf}={_describe(s)}" for leaf, s in sorted(members.items()))
                problems.append(
                    f"{parent}: {'/'.join(leaves)} are fused by {fmt} runtimes (vLLM, SGLang) and need one "
                    f"scheme, got {got}; give them the same scheme in layer_config "
                    f"(e.g. {{'{parent}': ...}}) or export 'fake'")
    return problems

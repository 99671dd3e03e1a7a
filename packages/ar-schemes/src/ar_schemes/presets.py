"""Named schemes (the reference's presets) and the one parser of names, dicts and overrides."""
from __future__ import annotations

from typing import Any

from .errors import SchemeError, choices_error
from .scheme import QuantScheme


def _int(bits: int, group: int = 128, sym: bool = True) -> QuantScheme:
    return QuantScheme(bits=bits, group_size=group, sym=sym, data_type="int")


def _mx(bits: int, rceil: bool = False) -> QuantScheme:
    dt = "mx_fp_rceil" if rceil else "mx_fp"
    return QuantScheme(bits=bits, group_size=32, data_type=dt, act_bits=bits, act_group_size=32,
                       act_data_type=dt, act_dynamic=True)


def _gguf(name: str, bits: int, group: int, sym: bool, super_bits: int | None = None,
          super_group: int | None = None) -> QuantScheme:
    dt = "int_dq" if super_bits else "int_ggml"  # ggml's rounding, so files match llama.cpp's
    return QuantScheme(bits=bits, group_size=group, sym=sym, data_type=dt, super_bits=super_bits,
                       super_group_size=super_group, gguf=name)


PRESETS: dict[str, QuantScheme] = {
    **{f"W{b}A16": _int(b) for b in range(2, 9)},
    "W2A16G64": _int(2, 64),
    "W2A16G32": _int(2, 32),
    "W3A16G64": _int(3, 64),
    "W4A16G64": _int(4, 64),
    "MXFP4": _mx(4),
    "MXFP4_RCEIL": _mx(4, rceil=True),
    "MXFP8": _mx(8),
    "MXFP8_RCEIL": _mx(8, rceil=True),
    "NVFP4": QuantScheme(bits=4, group_size=16, data_type="nv_fp", act_bits=4, act_group_size=16,
                         act_data_type="nv_fp", act_dynamic=True),
    "FPW8A16": QuantScheme(bits=8, group_size=0, data_type="fp"),
    "FP8_STATIC": QuantScheme(bits=8, group_size=-1, data_type="fp", act_bits=8, act_group_size=0,
                              act_data_type="fp", act_dynamic=False),
    "FP8_BLOCK": QuantScheme(bits=8, group_size=(128, 128), data_type="fp", act_bits=8, act_group_size=128,
                             act_data_type="fp", act_dynamic=True),
    "INT8": QuantScheme(bits=8, group_size=-1, sym=True, data_type="int", act_bits=8, act_group_size=-1,
                        act_data_type="int", act_dynamic=True),
    "BF16": QuantScheme(bits=16, group_size=-1, data_type="float"),
    "GGUF:Q4_0": _gguf("q4_0", 4, 32, True),
    "GGUF:Q4_1": _gguf("q4_1", 4, 32, False),
    "GGUF:Q5_0": _gguf("q5_0", 5, 32, True),
    "GGUF:Q5_1": _gguf("q5_1", 5, 32, False),
    "GGUF:Q8_0": _gguf("q8_0", 8, 32, True),
    "GGUF:Q2_K_S": _gguf("q2_k_s", 2, 16, False, 4, 16),
    **{f"GGUF:Q3_K_{s}": _gguf(f"q3_k_{s.lower()}", 3, 16, True, 6, 16) for s in "SML"},
    **{f"GGUF:Q4_K_{s}": _gguf(f"q4_k_{s.lower()}", 4, 32, False, 6, 8) for s in "SM"},
    **{f"GGUF:Q5_K_{s}": _gguf(f"q5_k_{s.lower()}", 5, 32, False, 6, 8) for s in "SM"},
    "GGUF:Q6_K": _gguf("q6_k", 6, 16, True, 8, 16),
}
ALIASES = {"W8A8": "INT8", "INT8_W8A8": "INT8", "W16A16": "BF16", "FP8": "FP8_STATIC", "FP8_DYNAMIC": "FP8_BLOCK"}


def preset_names() -> list[str]:
    return list(PRESETS)


def get_scheme(spec: str | dict[str, Any] | QuantScheme, **overrides: Any) -> QuantScheme:
    """Resolve a preset name, a dict of fields or a scheme, then apply overrides.

    A dict may name a base preset under ``"scheme"``; unset (None) overrides are ignored.

    >>> get_scheme("W4A16", bits=3).bits
    3
    """
    if isinstance(spec, QuantScheme):
        base = spec
    elif isinstance(spec, str):
        base = _preset(spec)
    elif isinstance(spec, dict):
        fields_ = dict(spec)
        name = fields_.pop("scheme", None)
        base = _preset(name) if name else QuantScheme()
        overrides = {**fields_, **overrides}
    else:
        raise SchemeError(f"a scheme must be a preset name, a dict or a QuantScheme, got {type(spec).__name__}")
    return base.with_overrides(**overrides) if overrides else base


def _preset(name: str) -> QuantScheme:
    key = name.strip().upper()
    if key.startswith("GGUF_") or (key.startswith("Q") and f"GGUF:{key}" in PRESETS):
        key = "GGUF:" + key.removeprefix("GGUF_")
    key = ALIASES.get(key, key)
    if key not in PRESETS:
        raise choices_error("scheme", name, PRESETS, hint="see `ar list schemes`")
    return PRESETS[key]


def scheme_name(scheme: QuantScheme) -> str | None:
    """The preset name of a scheme, or None when it is a custom one."""
    for name, s in PRESETS.items():
        if s == scheme:
            return name
    return None


__all__ = ["PRESETS", "get_scheme", "preset_names", "scheme_name", "SchemeError"]

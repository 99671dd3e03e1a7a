"""The frozen, validated description of how one layer is quantized."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .errors import SchemeError

SCHEME_VERSION = 1

# data_type -> allowed weight bits
DATA_TYPES: dict[str, tuple[int, ...]] = {
    "int": (2, 3, 4, 5, 6, 7, 8),
    "int_dq": (2, 3, 4, 5, 6),  # GGUF k-quants: int codes, scales quantized again per super-block
    "int_ggml": (4, 5, 8),  # GGUF legacy blocks (q4_0 .. q8_0, iq4_nl) with ggml's own rounding
    "mx_fp": (4, 8),
    "mx_fp_rceil": (4, 8),
    "nv_fp": (4,),
    "fp": (8,),  # FP8 e4m3
    "float": (16, 32),  # not quantized (BF16 preset, 16-bit activations)
}
ACT_DATA_TYPES = ("float", "int", "mx_fp", "mx_fp_rceil", "nv_fp", "fp")

GroupSize = int | tuple[int, int]


@dataclass(frozen=True)
class QuantScheme:
    """How the weights (and optionally activations) of a layer are quantized.

    group_size: > 0 groups of that many input channels, -1 one group per output channel,
    0 one group for the whole tensor, (rows, cols) 2-D blocks.

    >>> QuantScheme(bits=4, group_size=128, sym=True).bits
    4
    """

    bits: int = 4
    group_size: GroupSize = 128
    sym: bool = True
    data_type: str = "int"
    act_bits: int = 16
    act_group_size: GroupSize = 128
    act_sym: bool = True
    act_data_type: str = "float"
    act_dynamic: bool = True
    super_bits: int | None = None
    super_group_size: int | None = None
    gguf: str | None = None  # ggml type name for GGUF schemes ("q4_k", "q4_k_m", ...)

    def __post_init__(self) -> None:
        if isinstance(self.group_size, list):
            object.__setattr__(self, "group_size", tuple(self.group_size))
        if isinstance(self.act_group_size, list):
            object.__setattr__(self, "act_group_size", tuple(self.act_group_size))
        for name in ("sym", "act_sym", "act_dynamic"):
            if not isinstance(getattr(self, name), bool):
                raise SchemeError(f"{name}={getattr(self, name)!r} must be True or False")
        for name in ("bits", "act_bits"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int):
                raise SchemeError(f"{name}={getattr(self, name)!r} must be an int, e.g. 4")
        if self.data_type not in DATA_TYPES:
            raise SchemeError(f"unknown data_type {self.data_type!r}; valid choices: {', '.join(DATA_TYPES)}")
        allowed = DATA_TYPES[self.data_type]
        if self.bits not in allowed:
            raise SchemeError(
                f"bits={self.bits} is not valid for data_type {self.data_type!r}; valid bits: {allowed}")
        _check_group("group_size", self.group_size)
        _check_group("act_group_size", self.act_group_size)
        if self.act_data_type not in ACT_DATA_TYPES:
            raise SchemeError(
                f"unknown act_data_type {self.act_data_type!r}; valid choices: {', '.join(ACT_DATA_TYPES)}")
        if not 2 <= self.act_bits <= 32:
            raise SchemeError(f"act_bits={self.act_bits} is out of range; use 2..8 to quantize or 16 to keep")
        if (self.super_bits is None) != (self.super_group_size is None):
            raise SchemeError("super_bits and super_group_size go together: set both or neither")
        if self.data_type == "int_dq" and self.super_bits is None:
            raise SchemeError("data_type 'int_dq' (GGUF k-quant) needs super_bits and super_group_size")

    # ---- derived facts -------------------------------------------------------------------
    @property
    def is_quantized(self) -> bool:
        """False for schemes that keep weights in 16 bits (BF16, W16A16)."""
        return self.data_type != "float" and self.bits < 16

    @property
    def quantizes_activations(self) -> bool:
        return self.act_bits < 16

    def with_overrides(self, **overrides: Any) -> QuantScheme:
        """A copy with some fields changed, e.g. ``W4A16.with_overrides(bits=3)``."""
        names = {f.name for f in fields(self)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise SchemeError(f"unknown scheme field(s) {bad}; valid fields: {sorted(names)}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("group_size", "act_group_size"):
            if isinstance(d[k], tuple):
                d[k] = list(d[k])
        d["version"] = SCHEME_VERSION
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantScheme:
        data = dict(data)
        version = data.pop("version", SCHEME_VERSION)
        if version != SCHEME_VERSION:
            raise SchemeError(f"scheme version {version} is not supported; this ar-schemes reads version {SCHEME_VERSION}")
        names = {f.name for f in fields(cls)}
        bad = sorted(set(data) - names)
        if bad:
            raise SchemeError(f"unknown scheme field(s) {bad}; valid fields: {sorted(names)}")
        return cls(**data)


def _check_group(name: str, g: object) -> None:
    if isinstance(g, tuple):
        if len(g) != 2 or not all(isinstance(x, int) and x > 0 for x in g):
            raise SchemeError(f"{name}={g!r}: a 2-D block must be two positive ints, e.g. (128, 128)")
    elif not isinstance(g, int) or g < -1:
        raise SchemeError(f"{name}={g!r}: use a positive group size, -1 (per channel), 0 (per tensor) or (rows, cols)")

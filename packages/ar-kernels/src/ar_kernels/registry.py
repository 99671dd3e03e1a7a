"""The backend registry: which QuantLinear can serve a layer on a device, and which is best.

Every backend declares what it serves (device, bits, group sizes, sym/asym, packing formats,
dtypes), a priority, the packages it needs and shape checks. Declaring costs nothing: a backend
module imports only torch, and its kernels (Triton, IPEX, HPU) are imported on first use. So
``select_backend`` can rank backends that are not installed and hint at a better one.

>>> desc = LayerDesc(in_features=256, out_features=64, bits=4, group_size=128, sym=True)
>>> select_backend(desc, "cpu").name
'torch:int'
"""
from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import BackendError, choices_error

logger = logging.getLogger("ar")

# How the integer weights of a layer are laid out in a checkpoint.
#   gptq:       GPTQ v1, qweight [in*b/32, out] packed along in, qzeros hold zero-1
#   auto_round: as gptq but qzeros hold the raw zero point (asym layers other than 4-bit)
#   awq:        AWQ gemm, qweight [in, out*b/32] packed along out in order 0,4,1,5,2,6,3,7
# and the float element formats: fp8 (e4m3 weights), mx_fp4 (E2M1 + E8M0), nv_fp4 (E2M1 + e4m3).
PACKINGS = ("gptq", "auto_round", "awq", "fp8", "mx_fp4", "mx_fp8", "nv_fp4")
DATA_TYPES = ("int", "fp", "mx_fp", "nv_fp")
DEVICES = ("cpu", "cuda", "xpu", "hpu")


@dataclass(frozen=True)
class LayerDesc:
    """What a backend must know about one quantized Linear to decide whether it can serve it.

    group_size: > 0 input channels per group, -1 one group per output channel (the whole row).
    dtype: the activation / compute dtype (fp16, bf16 or fp32).
    """

    in_features: int
    out_features: int
    bits: int
    group_size: int
    sym: bool = True
    data_type: str = "int"
    packing: str = "gptq"
    dtype: torch.dtype = torch.float16
    act_bits: int = 16
    g_idx: bool = False  # the checkpoint carries a g_idx (GPTQ); non-trivial ones reorder groups
    block_size: tuple[int, int] | None = None  # 2-D weight blocks (FP8_BLOCK), else None

    def __post_init__(self) -> None:
        if self.packing not in PACKINGS:
            raise choices_error("packing", self.packing, PACKINGS)
        if self.data_type not in DATA_TYPES:
            raise choices_error("data_type", self.data_type, DATA_TYPES)
        if self.group_size < -1 or (self.group_size == 0 and self.data_type == "int"):
            raise BackendError(f"group_size={self.group_size}: use a positive group size, -1 (per channel) "
                               "or, for float types, 0 (per tensor)")

    @property
    def group(self) -> int:
        """The effective group size: ``in_features`` for per-channel layers."""
        return self.in_features if self.group_size in (-1, 0) else self.group_size

    @property
    def ngroups(self) -> int:
        return -(-self.in_features // self.group)


Checker = Callable[[LayerDesc], "str | None"]


@dataclass(frozen=True)
class BackendSpec:
    """A backend's declaration. ``linear`` is the QuantLinear class that serves the layers.

    checks: shape constraints, each returning None when the layer is fine, else the reason.
    requirements: importable module names (``"triton"``), checked without importing them.
    extra: the ``ar-kernels[...]`` extra that installs the requirements (for hints and errors).
    cpu_interpret: the backend also runs on CPU when ``TRITON_INTERPRET=1`` and it is asked for by
        name (tests, CI); ``"auto"`` never picks an interpreter.
    """

    name: str
    devices: tuple[str, ...]
    bits: tuple[int, ...]
    packings: tuple[str, ...]
    data_types: tuple[str, ...] = ("int",)
    group_sizes: tuple[int, ...] | None = None  # None: any
    sym: tuple[bool, ...] = (True, False)
    dtypes: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32)
    priority: int = 0
    requirements: tuple[str, ...] = ()
    extra: str = ""
    checks: tuple[Checker, ...] = ()
    cpu_interpret: bool = False
    act_quant: bool = False  # can serve layers that quantize activations
    install: str = ""  # how to install the requirements when no pip extra does (Habana)
    linear: Any = field(default=None, compare=False)

    @property
    def family(self) -> str:
        """``"triton"`` for ``"triton:int"``: what ``backend="triton"`` selects."""
        return self.name.split(":", 1)[0]

    def serves_device(self, device: str, forced: bool = False) -> bool:
        if device in self.devices:
            return True
        return forced and device == "cpu" and self.cpu_interpret and os.environ.get("TRITON_INTERPRET") == "1"

    def install_hint(self) -> str:
        return self.install or f'pip install "ar-kernels[{self.extra or self.family}]"'

    def missing_requirements(self) -> list[str]:
        return [r for r in self.requirements if importlib.util.find_spec(r.split(".")[0]) is None]

    def reasons(self, desc: LayerDesc, device: str, forced: bool = False) -> list[str]:
        """Why this backend cannot serve ``desc`` on ``device`` (empty: it can, if installed)."""
        out = []
        if not self.serves_device(device, forced):
            out.append(f"device {device!r} not in {self.devices}")
        for what, got, ok in (("data_type", desc.data_type, self.data_types), ("bits", desc.bits, self.bits),
                              ("packing", desc.packing, self.packings), ("sym", desc.sym, self.sym),
                              ("dtype", desc.dtype, self.dtypes)):
            if got not in ok:
                out.append(f"{what}={got} not in {ok}")
        if self.group_sizes is not None and desc.group_size not in self.group_sizes:
            out.append(f"group_size={desc.group_size} not in {self.group_sizes}")
        if desc.act_bits < 16 and not self.act_quant:
            out.append(f"act_bits={desc.act_bits}: activation quantization not supported")
        out.extend(r for r in (c(desc) for c in self.checks) if r)
        return out


BACKENDS: dict[str, BackendSpec] = {}
_HINTED: set[str] = set()


def register_backend(spec: BackendSpec) -> Callable[[type], type]:
    """Class decorator registering a QuantLinear class under ``spec.name`` (``"<backend>:<variant>"``).

    >>> @register_backend(BackendSpec("mine:int", ("cpu",), (4,), ("gptq",)))  # doctest: +SKIP
    ... class MineIntLinear(IntQuantLinear): ...
    """
    def deco(cls: type) -> type:
        if spec.name in BACKENDS and BACKENDS[spec.name].linear is not cls:
            raise BackendError(f"backend {spec.name!r} is already registered by {BACKENDS[spec.name].linear}")
        BACKENDS[spec.name] = BackendSpec(**{**spec.__dict__, "linear": cls})
        cls.spec = BACKENDS[spec.name]
        return cls
    return deco


def _load_entry_points() -> None:
    """Backends of third-party packages (entry point group ``ar.backends``), loaded once."""
    if _load_entry_points.done:  # type: ignore[attr-defined]
        return
    _load_entry_points.done = True  # type: ignore[attr-defined]
    from importlib.metadata import entry_points
    for ep in entry_points(group="ar.backends"):
        try:
            ep.load()
        except Exception as exc:  # a broken plugin must not break loading
            logger.warning("ar.backends entry point %s failed to load: %s", ep.name, exc)


_load_entry_points.done = False  # type: ignore[attr-defined]


def device_type(device: str | torch.device) -> str:
    """``"cuda"`` for ``"cuda:1"`` or ``torch.device("cuda", 1)``."""
    kind = torch.device(device).type
    if kind not in DEVICES:
        raise choices_error("device", device, DEVICES)
    return kind


def candidates(desc: LayerDesc, device: str | torch.device, forced: bool = False
               ) -> list[tuple[BackendSpec, list[str]]]:
    """Every registered backend, best first, with the reasons it cannot serve ``desc`` (empty: it can)."""
    _load_entry_points()
    dev = device_type(device)
    ranked = sorted(BACKENDS.values(), key=lambda s: -s.priority)
    return [(s, s.reasons(desc, dev, forced)) for s in ranked]


def select_backend(desc: LayerDesc, device: str | torch.device = "cpu", backend: str = "auto") -> BackendSpec:
    """The best installed backend for ``desc`` on ``device``, or the one ``backend`` names.

    ``backend`` is ``"auto"``, a family (``"triton"``) or an exact key (``"triton:int"``).
    Raises BackendError explaining why when nothing can serve the layer.
    """
    cands = candidates(desc, device, forced=backend != "auto")
    if backend != "auto":
        known = sorted({s.family for s, _ in cands} | {s.name for s, _ in cands})
        cands = [(s, r) for s, r in cands if backend in (s.name, s.family)]
        if not cands:
            raise choices_error("backend", backend, ["auto", *known])
    usable = [s for s, r in cands if not r and not s.missing_requirements()]
    if not usable:
        raise _no_backend_error(desc, device, backend, cands)
    best = usable[0]
    if backend == "auto":
        _hint_better(best, cands)
    return best


def _hint_better(best: BackendSpec, cands: list[tuple[BackendSpec, list[str]]]) -> None:
    """One log line per backend when a better one could serve the layer if it were installed."""
    for spec, reasons in cands:
        if spec.priority <= best.priority:
            return
        if not reasons and spec.name not in _HINTED:
            _HINTED.add(spec.name)
            logger.info("using backend %s; %s would be faster: %s", best.name, spec.name, spec.install_hint())


def _no_backend_error(desc: LayerDesc, device: str | torch.device, backend: str,
                      cands: list[tuple[BackendSpec, list[str]]]) -> BackendError:
    lines = []
    for spec, reasons in cands:
        miss = spec.missing_requirements()
        if miss:
            reasons = [*reasons, f"needs {', '.join(miss)}: {spec.install_hint()}"]
        lines.append(f"  {spec.name}: {'; '.join(reasons)}")
    return BackendError(f"no backend{'' if backend == 'auto' else ' ' + repr(backend)} can serve layer {desc} "
                        f"on {device}:\n" + "\n".join(lines))

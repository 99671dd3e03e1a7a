"""All tuning options in one frozen, validated record."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import QuantizeError


@dataclass(frozen=True)
class QuantizeOptions:
    """Options of :func:`ar_core.quantize`; every value is checked before any work starts."""

    iters: int = 200
    lr: float | None = None
    minmax_lr: float | None = None
    nsamples: int = 128
    seqlen: int = 2048
    batch_size: int = 8
    gradient_accumulate_steps: int = 1
    seed: int = 42
    layer_config: dict[str, Any] = field(default_factory=dict)
    ignore_layers: tuple[str, ...] = ()
    quant_lm_head: bool = False
    disable_opt_rtn: bool = False
    not_use_best_mse: bool = False
    enable_minmax_tuning: bool = True
    enable_quanted_input: bool = True
    low_gpu_mem_usage: bool = False
    device: str = "cpu"
    device_map: Any = None
    enable_torch_compile: bool | None = None  # None: on for CUDA, and on CPU for long enough runs
    enable_deterministic_algorithms: bool = False
    adam: bool = False
    enable_alg_ext: bool = False  # searched sym-int/MX/NV start, clip range [0, 2], robust loss at <= 3 bits
    amp: bool | None = None  # None: bf16 autocast where the device computes bf16 fast
    work_dir: str | None = None  # per-block checkpoints for --resume
    resume: bool = False

    def __post_init__(self) -> None:
        _positive(self, "nsamples", "seqlen", "batch_size", "gradient_accumulate_steps")
        if self.iters < 0:
            raise QuantizeError(f"iters={self.iters} must be >= 0 (0 means optimized RTN, no tuning)")
        for name in ("lr", "minmax_lr"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise QuantizeError(f"{name}={v} must be a positive number (or unset for 1/iters)")
        if self.resume and not self.work_dir:
            raise QuantizeError("resume=True needs work_dir (the CLI uses <output_dir>/.ar-work)")
        if isinstance(self.ignore_layers, str):
            object.__setattr__(self, "ignore_layers", tuple(x for x in self.ignore_layers.split(",") if x))

    @classmethod
    def build(cls, **options: Any) -> QuantizeOptions:
        names = {f.name for f in fields(cls)}
        bad = sorted(set(options) - names)
        if bad:
            raise QuantizeError(f"unknown option(s) {bad}; valid options: {sorted(names)}")
        return cls(**{k: v for k, v in options.items() if v is not None or k in ("lr", "minmax_lr", "amp",
                                                                                 "enable_torch_compile")})

    def record(self) -> dict[str, Any]:
        """Options worth writing into a checkpoint's config (no paths, no devices)."""
        d = asdict(self)
        for k in ("device", "device_map", "work_dir", "resume", "layer_config", "low_gpu_mem_usage"):
            d.pop(k, None)
        d["ignore_layers"] = list(self.ignore_layers)
        return d


def _positive(opts: QuantizeOptions, *names: str) -> None:
    for name in names:
        v = getattr(opts, name)
        if not isinstance(v, int) or v < 1:
            raise QuantizeError(f"{name}={v!r} must be a positive integer")

"""transformers integration: a quantizer so ``from_pretrained`` loads ``auto-round`` checkpoints.

transformers ships an ``auto-round`` quantizer that calls into the reference ``auto_round``
package. We register ours under the same quant_method only when that package is absent (so
``AutoModelForCausalLM.from_pretrained`` works with ar-kernels alone) or when asked explicitly
(``force=True`` or ``AR_KERNELS_TRANSFORMERS=1``): silently replacing the reference's loader in an
environment that installed it would change which kernels its users get. ``load()`` always uses
ours, for the duration of the call only (``ar_quantizer_installed``).

>>> import ar_kernels
>>> ar_kernels.register_transformers_quantizer()  # doctest: +SKIP
True
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import torch

from .errors import missing

METHOD = "auto-round"
_QUANTIZER_CLS: type | None = None


def _quantizer_class() -> type:
    """Build (once) the HfQuantizer subclass; transformers is imported here, not at module import."""
    global _QUANTIZER_CLS
    if _QUANTIZER_CLS is not None:
        return _QUANTIZER_CLS
    try:
        from transformers.quantizers.base import HfQuantizer
    except ImportError as exc:
        raise missing("transformers", "transformers") from exc

    class ArAutoRoundQuantizer(HfQuantizer):
        """Loads auto-round (and, through ``ar_kernels.load``, GPTQ / AWQ) checkpoints with ar-kernels."""

        requires_calibration = True  # pre-quantized checkpoints only

        def validate_environment(self, *args: Any, **kwargs: Any) -> None:
            self.device_map = kwargs.get("device_map")

        def get_new_dtype(self, converter: Any, param: Any, dtype: Any) -> Any:
            # keep the stored dtype of quantization tensors (fp16 scales must not be rounded to bf16)
            name = getattr(converter, "target_patterns", None) or getattr(converter, "source_patterns", None) or ""
            if any(str(n).endswith(_KEEP_DTYPE) for n in ([name] if isinstance(name, str) else name)):
                return None
            return super().get_new_dtype(converter, param, dtype)

        def _process_model_before_weight_loading(self, model: Any, checkpoint_files: Any = None,
                                                 dtype: Any = None, **kwargs: Any) -> None:
            from .load import replace_linears
            from .plan import checkpoint_keys
            files = [f for f in (checkpoint_files or []) if str(f).endswith(".safetensors")]
            qc = self.quantization_config.to_dict()
            backend = getattr(self.quantization_config, "backend", "auto") or "auto"
            self.used_backends = replace_linears(model, qc, checkpoint_keys(files), _target_device(self.device_map),
                                                 backend, dtype if isinstance(dtype, torch.dtype) else None)

        def _process_model_after_weight_loading(self, model: Any, **kwargs: Any) -> Any:
            from .load import post_init_model
            return post_init_model(model)

        @property
        def is_trainable(self) -> bool:
            return False

        def is_serializable(self) -> bool:
            return False  # the kernel layout is not the checkpoint layout after post_init

    _QUANTIZER_CLS = ArAutoRoundQuantizer
    return ArAutoRoundQuantizer


_KEEP_DTYPE = (".scales", ".qweight", ".qzeros", ".g_idx", ".weight_scale", ".weight_global_scale",
               ".input_global_scale", ".weight_packed")


def _target_device(device_map: Any) -> str:
    """The device the quantized layers run on, from from_pretrained's device_map."""
    if device_map is None:
        return "cpu"
    if isinstance(device_map, (str, torch.device, int)):
        d = str(device_map)
        return "cuda" if d in ("auto", "balanced") and torch.cuda.is_available() else (
            "cpu" if d in ("auto", "balanced") else d if not d.isdigit() else f"cuda:{d}")
    devs = {str(v) for v in dict(device_map).values()} - {"cpu", "disk"}
    return next(iter(sorted(devs)), "cpu") if devs else "cpu"


def reference_available() -> bool:
    """Whether the reference ``auto_round`` package is installed (its quantizer then serves auto-round)."""
    return importlib.util.find_spec("auto_round") is not None


def register_transformers_quantizer(force: bool = False) -> bool:
    """Make ``from_pretrained`` load ``quant_method: auto-round`` checkpoints with ar-kernels.

    Registers only when the reference ``auto_round`` package is not installed, unless ``force``
    (or the environment variable ``AR_KERNELS_TRANSFORMERS=1``). Returns whether ours is active.
    """
    force = force or os.environ.get("AR_KERNELS_TRANSFORMERS") == "1"
    if reference_available() and not force:
        return False
    from transformers.quantizers import auto
    auto.AUTO_QUANTIZER_MAPPING[METHOD] = _quantizer_class()
    auto.AUTO_QUANTIZATION_CONFIG_MAPPING.setdefault(METHOD, auto.AutoRoundConfig)
    return True


@contextlib.contextmanager
def ar_quantizer_installed() -> Iterator[None]:
    """Our quantizer serves auto-round inside the block; the previous one is restored after."""
    from transformers.quantizers import auto
    before = auto.AUTO_QUANTIZER_MAPPING.get(METHOD)
    auto.AUTO_QUANTIZER_MAPPING[METHOD] = _quantizer_class()
    try:
        yield
    finally:
        if before is None:
            auto.AUTO_QUANTIZER_MAPPING.pop(METHOD, None)
        else:
            auto.AUTO_QUANTIZER_MAPPING[METHOD] = before


__all__ = ["register_transformers_quantizer", "ar_quantizer_installed", "reference_available"]

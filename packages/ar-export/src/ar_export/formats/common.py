"""Pieces shared by exporters: tokenizer and generation config, quantization_config files."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def save_hf_extras(model: Any, tokenizer: Any, out_dir: Path) -> None:
    """Copy the tokenizer and the generation config beside the weights."""
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)
    gen = getattr(model, "generation_config", None)
    if gen is not None and not (out_dir / "generation_config.json").exists():
        gen.save_pretrained(out_dir)


def write_quantization_config(out_dir: Path, qconfig: dict[str, Any]) -> None:
    """Put ``quantization_config`` into config.json and a copy in quantization_config.json."""
    cfg_path = out_dir / "config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    cfg["quantization_config"] = qconfig
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
    (out_dir / "quantization_config.json").write_text(json.dumps(qconfig, indent=2, sort_keys=True))

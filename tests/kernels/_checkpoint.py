"""Write a small auto_round (GPTQ-layout) checkpoint from a bf16 model, RTN-quantized with ar_schemes.

Stands in for ``ar_export.save(..., formats="auto_round")`` so the loader can be tested on its
own; the layout is the reference's (see shared/reference/autoround-facts.md).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from ar_kernels.packing import awq, gptq


def quantize_to_checkpoint(model: torch.nn.Module, src: Path | None, out: Path, bits: int = 4, group: int = 128,
                           sym: bool = True, packing: str = "auto_round:auto_gptq",
                           blocks: str = "model.layers") -> torch.nn.Module:
    """Quantize every Linear inside ``blocks`` in place (fake quant) and write the packed checkpoint."""
    from ar_schemes import QuantScheme, quantize
    scheme = QuantScheme(bits=bits, group_size=group, sym=sym)
    sd = {k: v for k, v in model.state_dict().items()}
    for name, mod in model.named_modules():
        if not (isinstance(mod, torch.nn.Linear) and name.startswith(blocks + ".")):
            continue
        r = quantize(mod.weight.detach().float(), scheme)
        codes, zero = r.codes.round().to(torch.uint8), r.zero.round().to(torch.int32)
        mod.weight.data = r.dequant.to(mod.weight.dtype)  # the fake-quant model
        del sd[f"{name}.weight"]
        sd[f"{name}.scales"] = r.scale.t().contiguous().half()
        if packing.endswith("awq"):
            sd[f"{name}.qweight"] = awq.pack(codes.t().contiguous(), bits)
            sd[f"{name}.qzeros"] = awq.pack(zero.t().contiguous(), bits)
        else:
            sd[f"{name}.qweight"] = gptq.pack_qweight(codes, bits)
            sd[f"{name}.qzeros"] = gptq.pack_qzeros(zero, bits, offset=0 if packing == "auto_round" else 1)
    if getattr(model.config, "tie_word_embeddings", False):
        sd.pop("lm_head.weight", None)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(out / "model.safetensors"), metadata={"format": "pt"})
    qc = {"quant_method": "auto-round", "packing_format": packing, "bits": bits, "group_size": group, "sym": sym,
          "data_type": "int", "block_name_to_quantize": blocks, "autoround_version": "ar-test"}
    model.config.save_pretrained(out)
    cfg = json.loads((out / "config.json").read_text())
    cfg["quantization_config"] = qc
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    (out / "quantization_config.json").write_text(json.dumps(qc, indent=2))
    if src is not None:
        for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json"):
            if (src / f).exists():
                shutil.copy(src / f, out / f)
    return model

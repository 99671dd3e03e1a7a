"""The real model in CI: `ar quantize` on Gemma-3-270M (RTN), saved, reloaded, perplexity sane."""
import math
import subprocess
import sys

import pytest
import torch
from conftest import gemma_dir


def test_gemma_rtn_quantize_and_score(tmp_path):
    model_dir = gemma_dir()
    out = tmp_path / "gemma-w4"
    r = subprocess.run([sys.executable, "-m", "ar_cli.main", "quantize", "--model", str(model_dir), "--scheme",
                        "W4A16", "--iters", "0", "--disable_opt_rtn", "--format", "fake", "--output_dir", str(out)],
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "quantized 126 layers" in r.stdout
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ar_eval import perplexity
    tok = AutoTokenizer.from_pretrained(model_dir)
    fp = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    q = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    ppl_fp = perplexity(fp, tok, "wikitext2_eval", seqlen=256, windows=2).ppl
    ppl_q = perplexity(q, tok, "wikitext2_eval", seqlen=256, windows=2).ppl
    assert math.isfinite(ppl_q) and ppl_fp < ppl_q < ppl_fp * 4, (ppl_fp, ppl_q)
    w = q.model.layers[0].mlp.down_proj.weight
    assert (w[0, :128].unique().numel()) <= 16  # 4-bit: at most 16 levels per group


@pytest.mark.slow
def test_gemma_light_recipe(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ar_cli.main", "quantize", "--model", str(gemma_dir()), "--scheme",
                        "W4A16", "--recipe", "light", "--nsamples", "8", "--seqlen", "256", "--format", "fake",
                        "--output_dir", str(tmp_path / "q")], capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stderr[-2000:]

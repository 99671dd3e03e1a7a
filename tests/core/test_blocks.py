"""Finding decoder blocks and weight targets in every supported architecture."""
import pytest
import torch
from conftest import TINY_ARCHS, tiny_model

from ar_core import find_blocks, find_targets

EXPECTED_TARGETS = {"llama": 7, "qwen2": 7, "qwen3": 7, "mistral": 7, "gemma3": 7, "opt": 6, "phi3": 4, "gpt2": 4,
                    "qwen3_moe": 6}


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_blocks_and_targets(arch):
    model = tiny_model(arch)
    blocks = find_blocks(model)
    assert len(blocks) == 2
    targets = find_targets(model.get_submodule(blocks[0]), blocks[0])
    assert len(targets) == EXPECTED_TARGETS[arch]
    for t in targets:
        w = t.weight2d()
        assert w.shape == t.shape
        assert torch.equal(t.to_layout(w), t.param.detach())


def test_gpt2_conv1d_is_transposed():
    model = tiny_model("gpt2")
    t = next(t for t in find_targets(model.transformer.h[0], "transformer.h.0") if t.name.endswith("c_fc"))
    assert t.kind == "conv1d" and t.shape == (256, 64)  # (out, in) although Conv1D stores (in, out)


def test_moe_experts_flattened():
    model = tiny_model("qwen3_moe")
    t = next(t for t in find_targets(model.model.layers[0], "model.layers.0") if t.kind == "experts"
             and t.attr == "gate_up_proj")
    assert t.shape == (4 * 128, 64)

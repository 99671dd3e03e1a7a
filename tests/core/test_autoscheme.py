"""AutoScheme: exact budgeted search, bit accounting against exported files, groups, fixed layers."""
from __future__ import annotations

import itertools
import math
import random

import pytest
import torch
from conftest import tiny_config, tiny_model, tiny_tokenizer

import ar_export
from ar_core import (
    AutoScheme,
    QuantizeError,
    choose_schemes,
    find_targets,
    gradient_stats,
    layer_bits,
    nominal_bits,
    quantize,
    solve_budget,
)
from ar_schemes import GGML_TYPES, QuantScheme, SchemeError, get_scheme, ggml_scheme, qdq

SAMPLES = torch.randint(0, 256, (4, 32), generator=torch.Generator().manual_seed(0))


def _brute_force(items, budget):
    best = None
    for combo in itertools.product(*[range(len(it)) for it in items]):
        cost = sum(items[i][k][0] for i, k in enumerate(combo))
        loss = sum(items[i][k][1] for i, k in enumerate(combo))
        if cost <= budget and (best is None or loss < best):
            best = loss
    return best


# ---- the pure search ------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(60))
def test_solve_budget_equals_brute_force(seed):
    rng = random.Random(seed)
    items = [[(rng.randint(1, 12), rng.choice([rng.random() * 10, float(rng.randint(0, 3))]))
              for _ in range(rng.randint(1, 4))] for _ in range(rng.randint(1, 6))]
    lo = sum(min(c for c, _ in it) for it in items)
    hi = sum(max(c for c, _ in it) for it in items)
    budget = rng.randint(lo, hi + 2)
    pick = solve_budget(items, budget)
    assert len(pick) == len(items)
    assert sum(items[i][k][0] for i, k in enumerate(pick)) <= budget
    assert sum(items[i][k][1] for i, k in enumerate(pick)) == pytest.approx(_brute_force(items, budget), abs=1e-9)


def test_solve_budget_infeasible_names_the_costs():
    with pytest.raises(QuantizeError, match="cheapest options cost 4 > budget 3"):
        solve_budget([[(2, 1.0), (5, 0.0)], [(2, 1.0)]], 3)


# ---- bits ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,bits", [
    ("W4A16", 4 + 20 / 128), ("W2A16G64", 2 + 18 / 64), ("W8A16", 8 + 24 / 128), ("MXFP4", 4 + 8 / 32),
    ("MXFP8", 8 + 8 / 32), ("BF16", 16.0)])
def test_nominal_bits(name, bits):
    assert nominal_bits(get_scheme(name)) == pytest.approx(bits)
    assert nominal_bits(get_scheme(name), ignore_scale_zp_bits=True) == get_scheme(name).bits


@pytest.mark.parametrize("ggml,block_bytes", [("q2_k", 84), ("q3_k", 110), ("q4_k", 144), ("q5_k", 176),
                                              ("q6_k", 210), ("q4_0", 18 * 8), ("q4_1", 20 * 8), ("q5_0", 22 * 8),
                                              ("q5_1", 24 * 8), ("q8_0", 34 * 8), ("iq4_nl", 18 * 8)])
def test_gguf_bits_are_ggml_block_bytes(ggml, block_bytes):
    """Per 256 weights: k-quants' block bytes; legacy types: 8 blocks of 32."""
    assert layer_bits((1, 256), ggml_scheme(ggml)) == block_bytes * 8
    assert ggml in GGML_TYPES


def _packed_bytes(tensors: dict, layer: str) -> int:
    keys = ("qweight", "qzeros", "scales", "weight_packed", "weight_scale", "weight")
    return sum(t.numel() * t.element_size() for k, t in tensors.items()
               if k.rpartition(".")[0] == layer and k.rpartition(".")[2] in keys)


@pytest.mark.parametrize("default,config", [
    ("W4A16", {"self_attn": "W2A16G64", "mlp.down_proj": "W8A16"}),  # sym: auto_gptq packing
    ("W4A16", {"self_attn": {"sym": False}, "mlp": {"sym": False, "group_size": 32}}),  # asym 4-bit: awq
    ("W3A16", {"self_attn": {"sym": False}, "mlp.down_proj": {"bits": 2, "sym": False, "group_size": -1}}),
    ("MXFP4", {"mlp.down_proj": "MXFP8"}),
])
def test_bits_match_the_auto_round_checkpoint(default, config, tmp_path):
    from safetensors.torch import load_file
    model = tiny_model("llama", hidden=128)
    qmodel = quantize(model, None, default, None, iters=0, disable_opt_rtn=True, layer_config=config)
    ar_export.save(qmodel, model, tiny_tokenizer(), tmp_path, "auto_round")
    tensors = {}
    for f in tmp_path.glob("*.safetensors"):
        tensors.update(load_file(f))
    for name, layer in qmodel.layers.items():
        assert layer_bits(layer.shape, layer.scheme) == 8 * _packed_bytes(tensors, name), (name, layer.scheme)


# ---- the option checks ----------------------------------------------------------------------------
def test_avg_bits_outside_the_options_is_refused():
    with pytest.raises(QuantizeError, match=r"outside what the options reach: 2\.281 to 4\.156"):
        AutoScheme(avg_bits=1.5, options="W2A16G64,W4A16")
    with pytest.raises(QuantizeError, match="outside"):
        AutoScheme(avg_bits=4.5, options=["W2A16G64", "W4A16"])
    assert AutoScheme(avg_bits=4.0, options="W2A16G64,W4A16", ignore_scale_zp_bits=True).avg_bits == 4.0
    with pytest.raises(SchemeError, match="valid choices"):
        AutoScheme(avg_bits=3.0, options="W2A16G64,W5A17")
    with pytest.raises(QuantizeError, match="method"):
        AutoScheme(avg_bits=3.0, method="hessian")
    assert AutoScheme(3.0, " w2a16g64 , W4A16").options == ("W2A16G64", "W4A16")


# ---- choosing on tiny models ------------------------------------------------------------------------
def _avg_from_config(model, layer_config, counted):
    from ar_schemes import resolve_layer_schemes
    targets = {t.name: t for t in find_targets(model)}
    schemes = resolve_layer_schemes(counted, get_scheme("W4A16"), layer_config)
    bits = sum(layer_bits(targets[n].shape, schemes[n]) for n in counted)
    return bits / sum(math.prod(targets[n].shape) for n in counted)


@pytest.mark.parametrize("target", [2.6, 3.0, 3.6])
def test_achieved_average_is_within_the_budget_and_close(target):
    model = tiny_model("llama", layers=4)
    cfg, report = choose_schemes(model, SAMPLES, AutoScheme(target, "W2A16G64,W4A16", nsamples=2))
    counted = [r["layer"] for r in report.rows]
    assert len(counted) == 4 * 7
    assert report.avg_bits <= target
    assert report.avg_bits > target - 0.2  # the largest group (gate/up) moves the average by 0.13 bits
    assert _avg_from_config(model, cfg, counted) == pytest.approx(report.avg_bits)
    assert set(cfg.values()) <= {"W2A16G64", "W4A16"}
    assert f"target {target}" in report.table()


def _check_shared(cfg, parents, leaves):
    for p in parents:
        assert len({str(cfg[f"{p}.{leaf}"]) for leaf in leaves}) == 1, (p, cfg)


def test_fused_siblings_and_experts_share_one_option():
    model = tiny_model("qwen3_moe", layers=3)
    cfg, report = choose_schemes(model, SAMPLES, AutoScheme(3.0, "W2A16G64,W4A16", nsamples=2))
    blocks = [f"model.layers.{i}" for i in range(3)]
    _check_shared(cfg, [f"{b}.self_attn" for b in blocks], ("q_proj", "k_proj", "v_proj"))
    _check_shared(cfg, [f"{b}.mlp.experts" for b in blocks], ("gate_up_proj", "down_proj"))
    model = tiny_model("llama", layers=3)
    cfg, _ = choose_schemes(model, SAMPLES, AutoScheme(3.0, "W2A16G64,W4A16", nsamples=2))
    _check_shared(cfg, [f"model.layers.{i}.mlp" for i in range(3)], ("gate_proj", "up_proj"))


def test_custom_shared_layers():
    model = tiny_model("llama", layers=3)
    auto = AutoScheme(3.0, "W2A16G64,W4A16", nsamples=2, shared_layers=[["mlp"]])
    cfg, _ = choose_schemes(model, SAMPLES, auto)
    _check_shared(cfg, [f"model.layers.{i}.mlp" for i in range(3)], ("gate_proj", "up_proj", "down_proj"))
    with pytest.raises(QuantizeError, match="shared_layers"):
        AutoScheme(3.0, shared_layers="mlp")


def test_fixed_layer_config_is_kept_and_counted():
    model = tiny_model("llama", layers=4)
    fixed = {"mlp.down_proj": "W8A16", "model.layers.0.self_attn.o_proj": {"bits": 3}}
    cfg, report = choose_schemes(model, SAMPLES, AutoScheme(4.0, "W2A16G64,W4A16", nsamples=2),
                                 layer_config=fixed)
    for k, v in fixed.items():
        assert cfg[k] == v
    rows = {r["layer"]: r for r in report.rows}
    assert all(rows[f"model.layers.{i}.mlp.down_proj"]["fixed"] for i in range(4))
    assert rows["model.layers.0.self_attn.o_proj"]["option"] == "W3A16G64"  # dict overrides on the first option
    assert "model.layers.0.mlp.down_proj" not in cfg  # resolved through the user's key
    assert report.avg_bits <= 4.0
    resolved = {**cfg, "model.layers.0.self_attn.o_proj": get_scheme("W2A16G64", bits=3)}
    assert _avg_from_config(model, resolved, list(rows)) == pytest.approx(report.avg_bits)


def test_infeasible_budget_is_a_clear_error():
    model = tiny_model("llama", layers=2)
    with pytest.raises(QuantizeError, match=r"avg_bits=3.0 cannot be met on this model: .* use avg_bits >= 6\.\d+"):
        choose_schemes(model, SAMPLES, AutoScheme(3.0, "W2A16G64,W4A16"), layer_config={"mlp": "W8A16"})


def test_ignored_and_lm_head_layers_are_not_counted():
    model = tiny_model("llama", layers=2)
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())  # untie
    cfg, report = choose_schemes(model, SAMPLES, AutoScheme(3.0, "W2A16G64,W4A16"), ignore_layers=["o_proj"])
    layers = {r["layer"] for r in report.rows}
    assert "lm_head" not in layers and not any("o_proj" in n for n in layers)
    cfg, report = choose_schemes(model, SAMPLES, AutoScheme(3.5, "W2A16G64,W4A16"), quant_lm_head=True)
    assert cfg["lm_head"] == get_scheme("W4A16")  # the finest option, fixed and counted
    assert {r["layer"]: r["fixed"] for r in report.rows}["lm_head"]


# ---- scores ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["fisher", "taylor"])
def test_gradient_stats_rank_coarser_options_worse(method):
    model = tiny_model("llama", layers=2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    targets = find_targets(model.model.layers)
    stats = gradient_stats(model, targets, list(SAMPLES[:2]), method)
    assert {t.name for t in targets} == set(stats)
    for t in targets:
        s = stats[t.name]
        assert s.shape == t.shape and torch.isfinite(s).all()
        w = t.weight2d().float()
        err = {o: qdq(w, get_scheme(o)) - w for o in ("W2A16G64", "W4A16", "W8A16")}
        score = {o: float((s * d * d).sum() if method == "fisher" else (s * d).abs().sum()) for o, d in err.items()}
        assert score["W2A16G64"] > score["W4A16"] > score["W8A16"], t.name
    assert all(torch.equal(p, before[n]) and p.grad is None for n, p in model.named_parameters())
    assert all(p.requires_grad for p in model.parameters())


# ---- data types and GGUF mixes --------------------------------------------------------------------
def test_mx_options():
    model = tiny_model("llama", layers=2)
    cfg, report = choose_schemes(model, SAMPLES, AutoScheme(6.0, "MXFP4,MXFP8", nsamples=2))
    assert set(cfg.values()) <= {"MXFP4", "MXFP8"} and report.avg_bits <= 6.0


def test_gguf_options_take_each_tensor_type_of_the_mix():
    from transformers import AutoModelForCausalLM
    cfg = tiny_config("llama", layers=8, hidden=256)
    cfg.intermediate_size = 512
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    auto = AutoScheme(3.5, "GGUF:Q2_K_S,GGUF:Q4_K_S", nsamples=2)
    layer_config, report = choose_schemes(model, SAMPLES, auto)
    assert all(isinstance(v, QuantScheme) and v.gguf in GGML_TYPES for v in layer_config.values())
    types = {v.gguf for v in layer_config.values()}
    assert types <= {"q2_k", "q4_k", "q5_k"} and "q2_k" in types
    down0 = layer_config["model.layers.0.mlp.down_proj"].gguf
    assert down0 in ("q4_k", "q5_k")  # Q2_K_S gives the first eighth's ffn_down q4_k, Q4_K_S q5_k
    assert report.avg_bits <= 3.5


# ---- through quantize() -------------------------------------------------------------------------
def test_quantize_with_an_autoscheme():
    model = tiny_model("llama", layers=4)
    qmodel = quantize(model, None, AutoScheme(3.0, "W2A16G64,W4A16", nsamples=2), SAMPLES, iters=0,
                      nsamples=4, seqlen=32)
    info = qmodel.stats["auto_scheme"]
    assert set(info["layers"]) == set(qmodel.layers)
    for name, layer in qmodel.layers.items():
        assert layer.scheme == get_scheme(info["layers"][name])
    bits = sum(layer_bits(q.shape, q.scheme) for q in qmodel.layers.values())
    params = sum(math.prod(q.shape) for q in qmodel.layers.values())
    assert bits / params == pytest.approx(info["avg_bits"], abs=1e-5) and info["avg_bits"] <= 3.0
    assert qmodel.default_scheme == get_scheme("W2A16G64")
    with pytest.raises(QuantizeError, match="calibration samples"):
        quantize(tiny_model("llama"), None, AutoScheme(3.0), None, iters=0, disable_opt_rtn=True)

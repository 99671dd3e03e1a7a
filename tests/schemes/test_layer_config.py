"""resolve_layer_schemes / key_matches: exact names, dotted substrings, regexes, ignore lists."""
from __future__ import annotations

import pytest

from ar_schemes import PRESETS, SchemeError, get_scheme, key_matches, resolve_layer_schemes

W4 = PRESETS["W4A16"]
NAMES = [f"model.layers.{i}.{m}" for i in (0, 1, 10, 11) for m in
         ("self_attn.q_proj", "self_attn.k_proj", "mlp.down_proj")] + ["lm_head"]


@pytest.mark.parametrize("key,name,hit", [
    ("model.layers.1.mlp.down_proj", "model.layers.1.mlp.down_proj", True),  # exact
    ("layers.1", "model.layers.1.mlp.down_proj", True),
    ("layers.1", "model.layers.10.mlp.down_proj", False),  # never a numeric prefix
    ("layers.1", "model.layers.11.self_attn.q_proj", False),
    ("q_proj", "model.layers.0.self_attn.q_proj", True),
    ("proj", "model.layers.0.self_attn.q_proj", False),  # plain keys match whole dotted parts
    ("mlp.down_proj", "model.layers.0.mlp.down_proj", True),
    (r"layers\.1\d\.", "model.layers.10.mlp.down_proj", True),  # regex: searched
    (r"layers\.1\d\.", "model.layers.1.mlp.down_proj", False),
    (".*q_proj", "model.layers.0.self_attn.q_proj", True),
    ("^lm_head$", "lm_head", True),
])
def test_key_matches(key, name, hit):
    assert key_matches(key, name) is hit


def test_exact_then_plain_then_regex():
    cfg = {r".*down_proj": "W2A16", "mlp": "W3A16", "model.layers.0.mlp.down_proj": "W8A16"}
    s = resolve_layer_schemes(NAMES, W4, cfg)
    assert s["model.layers.0.mlp.down_proj"].bits == 8  # exact wins
    assert s["model.layers.1.mlp.down_proj"].bits == 3  # plain substring before regex
    assert s["model.layers.1.self_attn.q_proj"] is W4  # untouched layers keep the default


def test_plain_keys_in_the_order_given():
    s = resolve_layer_schemes(NAMES, W4, {"layers.10": "W8A16", "q_proj": "W2A16"})
    assert s["model.layers.10.self_attn.q_proj"].bits == 8
    assert s["model.layers.1.self_attn.q_proj"].bits == 2


def test_layers_1_never_selects_layers_10():
    s = resolve_layer_schemes(NAMES, W4, {"layers.1": "W8A16"}, ignore=["layers.0"])
    assert {n for n, v in s.items() if v is not None and v.bits == 8} == {
        n for n in NAMES if n.startswith("model.layers.1.")}
    assert all(s[n] is None for n in NAMES if n.startswith("model.layers.0."))


def test_values_presets_dicts_and_schemes():
    cfg = {"k_proj": {"bits": 8}, "q_proj": {"scheme": "W2A16", "group_size": 32},
           "down_proj": get_scheme("W3A16"), "lm_head": "BF16"}
    s = resolve_layer_schemes(NAMES, get_scheme("W4A16G64"), cfg)
    k = s["model.layers.0.self_attn.k_proj"]
    assert (k.bits, k.group_size) == (8, 64)  # a dict without "scheme" overrides the default
    assert s["model.layers.0.self_attn.q_proj"] == get_scheme("W2A16", group_size=32)
    assert s["model.layers.0.mlp.down_proj"] == PRESETS["W3A16"]
    assert s["lm_head"] is None  # a 16-bit scheme keeps the layer unquantized


def test_ignore_wins_over_config_and_accepts_regexes():
    s = resolve_layer_schemes(NAMES, W4, {"lm_head": "W8A16", "q_proj": "W8A16"},
                              ignore=["lm_head", r"layers\.1[01]\.self_attn"])
    assert s["lm_head"] is None
    assert s["model.layers.10.self_attn.q_proj"] is None and s["model.layers.11.self_attn.k_proj"] is None
    assert s["model.layers.1.self_attn.q_proj"].bits == 8


def test_unquantized_default_keeps_everything():
    s = resolve_layer_schemes(NAMES, PRESETS["BF16"], {"q_proj": "W4A16"})
    assert s["model.layers.0.self_attn.q_proj"] == W4
    assert s["model.layers.0.self_attn.k_proj"] is None


def test_errors():
    with pytest.raises(SchemeError, match="not a valid regex"):
        resolve_layer_schemes(NAMES, W4, {"layers.(": "W8A16"})
    with pytest.raises(SchemeError, match=r"layer_config\['q_proj'\] must be a scheme name, a dict"):
        resolve_layer_schemes(NAMES, W4, {"q_proj": 8})
    with pytest.raises(SchemeError, match="unknown scheme 'W9A16'"):
        resolve_layer_schemes(NAMES, W4, {"q_proj": "W9A16"})
    with pytest.raises(SchemeError, match=r"unknown scheme field\(s\) \['bitz'\]"):
        resolve_layer_schemes(NAMES, W4, {"q_proj": {"bitz": 8}})

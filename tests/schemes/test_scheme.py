"""QuantScheme validation and its versioned dict form."""
from __future__ import annotations

import json

import pytest

from ar_schemes import DATA_TYPES, PRESETS, QuantScheme, SchemeError


@pytest.mark.parametrize("name", list(PRESETS))
def test_to_dict_from_dict_round_trip_through_json(name):
    s = PRESETS[name]
    d = json.loads(json.dumps(s.to_dict()))
    assert d["version"] == 1
    assert QuantScheme.from_dict(d) == s


def test_group_size_lists_become_tuples():
    s = QuantScheme(bits=8, group_size=[128, 128], data_type="fp", act_group_size=[1, 128])
    assert s.group_size == (128, 128) and s.act_group_size == (1, 128)
    assert s.to_dict()["group_size"] == [128, 128]
    hash(s)  # frozen and hashable, so schemes can key dicts


@pytest.mark.parametrize("kwargs,match", [
    (dict(data_type="int9"), r"unknown data_type 'int9'; valid choices: int, int_dq"),
    (dict(bits=9), r"bits=9 is not valid for data_type 'int'; valid bits: \(2, 3, 4, 5, 6, 7, 8\)"),
    (dict(bits=8, data_type="nv_fp"), r"valid bits: \(4,\)"),
    (dict(group_size=-2), r"group_size=-2.*-1 \(per channel\), 0 \(per tensor\)"),
    (dict(group_size=(128,)), r"two positive ints"),
    (dict(group_size=(0, 128)), r"two positive ints"),
    (dict(group_size=1.5), r"group_size=1.5"),
    (dict(act_data_type="int4"), r"unknown act_data_type 'int4'; valid choices: float, int"),
    (dict(act_bits=1), r"act_bits=1"),
    (dict(super_bits=6), r"super_bits and super_group_size go together"),
    (dict(data_type="int_dq"), r"needs super_bits"),
    (dict(sym="yes"), r"sym='yes' must be True or False"),
    (dict(bits="4"), r"bits='4' must be an int"),
])
def test_invalid_fields_name_the_value_and_the_choices(kwargs, match):
    with pytest.raises(SchemeError, match=match):
        QuantScheme(**kwargs)


def test_scheme_error_is_a_value_error():
    with pytest.raises(ValueError):
        QuantScheme(bits=1)


def test_from_dict_rejects_unknown_fields_and_versions():
    d = QuantScheme().to_dict()
    with pytest.raises(SchemeError, match=r"unknown scheme field\(s\) \['colour'\]; valid fields: \["):
        QuantScheme.from_dict({**d, "colour": 1})
    with pytest.raises(SchemeError, match="version 2 is not supported"):
        QuantScheme.from_dict({**d, "version": 2})
    assert QuantScheme.from_dict({"bits": 3}) == QuantScheme(bits=3)  # version defaults to current


def test_with_overrides():
    s = QuantScheme()
    assert s.with_overrides(bits=3, group_size=None) == QuantScheme(bits=3)
    with pytest.raises(SchemeError, match=r"unknown scheme field\(s\) \['bitz'\]"):
        s.with_overrides(bitz=3)


def test_is_quantized():
    assert QuantScheme().is_quantized and not PRESETS["BF16"].is_quantized
    assert PRESETS["MXFP4"].quantizes_activations and not PRESETS["W4A16"].quantizes_activations
    assert set(DATA_TYPES) >= {"int", "int_dq", "mx_fp", "mx_fp_rceil", "nv_fp", "fp", "float"}

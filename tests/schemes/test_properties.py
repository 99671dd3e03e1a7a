"""Hypothesis properties: scheme parsing, dict round trips, layer-config matching, code round trips.

Example counts are kept small: the whole tests/schemes/ folder must stay well under a minute.
"""
from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ar_schemes import (
    DATA_TYPES,
    PRESETS,
    QuantScheme,
    get_scheme,
    key_matches,
    quantize,
    resolve_layer_schemes,
)

from .reference import E2M1_MAGS

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- schemes -------------------------------------------------------------------------------------
@FAST
@given(name=st.sampled_from(list(PRESETS)), data=st.data())
def test_any_casing_and_padding_of_a_preset_name_parses(name, data):
    flips = data.draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    mixed = "".join(c.lower() if f else c for c, f in zip(name, flips))
    pad = data.draw(st.sampled_from(["", " ", "\t"]))
    assert get_scheme(pad + mixed + pad) == PRESETS[name]


_groups = st.one_of(st.just(-1), st.just(0), st.integers(1, 512),
                    st.tuples(st.integers(1, 256), st.integers(1, 256)))


@st.composite
def schemes(draw) -> QuantScheme:
    dt = draw(st.sampled_from(sorted(DATA_TYPES)))
    kw = dict(data_type=dt, bits=draw(st.sampled_from(DATA_TYPES[dt])), group_size=draw(_groups),
              sym=draw(st.booleans()), act_bits=draw(st.sampled_from([4, 8, 16])),
              act_group_size=draw(_groups), act_dynamic=draw(st.booleans()))
    if dt == "int_dq" or draw(st.booleans()):
        kw.update(super_bits=draw(st.sampled_from([4, 6, 8])), super_group_size=draw(st.sampled_from([8, 16])))
    return QuantScheme(**kw)


@FAST
@given(s=schemes())
def test_dict_round_trip_and_overrides(s):
    assert QuantScheme.from_dict(s.to_dict()) == s
    fields_only = {k: v for k, v in s.to_dict().items() if k != "version"}
    assert get_scheme(fields_only) == s  # a dict of every field parses to the same scheme
    assert get_scheme(s, sym=not s.sym).sym is (not s.sym)


# ---- layer config --------------------------------------------------------------------------------
@FAST
@given(i=st.integers(0, 150), j=st.integers(0, 150), part=st.sampled_from(["mlp.up_proj", "self_attn.o_proj"]))
def test_layer_index_keys_match_only_their_layer(i, j, part):
    name = f"model.layers.{j}.{part}"
    assert key_matches(f"layers.{i}", name) is (i == j)
    resolved = resolve_layer_schemes([name], PRESETS["W4A16"], {f"layers.{i}": "W8A16"})
    assert resolved[name].bits == (8 if i == j else 4)


@FAST
@given(parts=st.lists(st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True), min_size=1, max_size=5),
       data=st.data())
def test_every_dotted_slice_of_a_name_matches_it(parts, data):
    name = ".".join(parts)
    a = data.draw(st.integers(0, len(parts) - 1))
    b = data.draw(st.integers(a + 1, len(parts)))
    assert key_matches(".".join(parts[a:b]), name)


# ---- code round trips ----------------------------------------------------------------------------
@FAST
@given(codes=st.lists(st.integers(0, 15), min_size=32, max_size=32), k=st.integers(-20, 20),
       dt=st.sampled_from(["mx_fp", "mx_fp_rceil", "nv_fp"]))
def test_fp4_codes_round_trip(codes, k, dt):
    """E2M1 values with a 6 in each group (so the group scale is exact) come back code for code."""
    c = torch.tensor(codes)
    c[c == 8] = 0  # negative zero is written as +0
    c[0], c[16] = 7, 15  # |6| in every group of 16 (NV) and 32 (MX)
    mags = torch.tensor(E2M1_MAGS)
    w = (torch.where(c >= 8, -mags[c % 8], mags[c % 8]) * 2.0**k).reshape(1, 32)
    group = 16 if dt == "nv_fp" else 32
    r = quantize(w, QuantScheme(bits=4, group_size=group, data_type=dt))
    assert torch.equal(r.codes.reshape(-1).long(), c)
    assert torch.equal(r.dequant, w)


@FAST
@given(bits=st.integers(2, 8), sym=st.booleans(), data=st.data(),
       mant=st.integers(1024, 2047), exp=st.integers(-12, 0))
def test_int_codes_round_trip(bits, sym, data, mant, exp):
    """Codes spanning 0..2^b-1 on an fp16-exact scale with any zero point come back exactly."""
    top = 2**bits - 1
    codes = torch.tensor(data.draw(st.lists(st.integers(0, top), min_size=32, max_size=32)), dtype=torch.float32)
    codes[0] = 0
    if not sym:
        codes[1] = top
    zero = 2 ** (bits - 1) if sym else data.draw(st.integers(0, top))
    scale = mant / 1024 * 2.0**exp
    w = (scale * (codes - zero)).reshape(1, 32)
    r = quantize(w, QuantScheme(bits=bits, group_size=32, sym=sym))
    assert torch.equal(r.codes.reshape(-1), codes)
    assert torch.equal(r.dequant, w)
    assert r.zero.item() == zero

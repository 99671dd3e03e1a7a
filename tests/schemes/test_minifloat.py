"""The shared E2M1 / E4M3 grids: rounding, spacing, code tables, agreement with torch's float8 cast."""
from __future__ import annotations

import torch

from ar_schemes.dtypes.minifloat import (
    E2M1,
    E4M3,
    e2m1_decode,
    e2m1_encode,
    quantize_elements,
    round_to_format,
    ulp,
)

from .reference import E2M1_MAGS, e2m1_value_of_code, e4m3_all_values, nearest64


def test_format_constants():
    assert (E2M1.emin, E2M1.emax, E2M1.bias) == (0, 2, 1)
    assert (E4M3.emin, E4M3.emax, E4M3.bias) == (-6, 8, 7)


def test_every_e2m1_code_decodes_and_encodes():
    codes = torch.arange(16, dtype=torch.uint8)
    values = e2m1_decode(codes)
    assert values.tolist() == [e2m1_value_of_code(c) for c in range(16)]
    back = e2m1_encode(values)
    expect = codes.clone()
    expect[8] = 0  # negative zero is encoded as +0
    assert torch.equal(back, expect)


def test_every_e2m1_value_is_a_fixed_point():
    vals = torch.tensor(E2M1_MAGS + [-m for m in E2M1_MAGS])
    assert torch.equal(round_to_format(vals, E2M1), vals)


def test_every_e4m3_value_is_a_fixed_point_and_matches_torch():
    vals = e4m3_all_values().float()
    assert vals.numel() == 254
    assert torch.equal(round_to_format(vals, E4M3), vals)


def test_e4m3_rounding_matches_torch_cast_and_search():
    """Midpoints (the tie cases), near-midpoints, subnormals and out-of-range values."""
    vals = torch.unique(e4m3_all_values().float())
    mids = (vals[1:] + vals[:-1]) / 2
    x = torch.cat([mids, mids * (1 + 2**-20), mids * (1 - 2**-20), torch.tensor([500.0, -1e4, 2.0**-12])])
    ours = round_to_format(x, E4M3)
    assert torch.equal(ours, x.to(torch.float8_e4m3fn).float())
    assert torch.equal(ours.double(), nearest64(x, "e4m3"))


def test_e2m1_rounding_matches_search_including_ties():
    mags = torch.tensor(E2M1_MAGS)
    mids = (mags[1:] + mags[:-1]) / 2
    x = torch.cat([mids, -mids, mids + 1e-4, mids - 1e-4, torch.tensor([7.0, 100.0, -6.5])])
    assert torch.equal(round_to_format(x, E2M1).double(), nearest64(x, "e2m1"))
    # ties go to the even mantissa: 0.25 -> 0, 0.75 -> 1, 2.5 -> 2, 3.5 -> 4, 5 -> 4
    assert round_to_format(torch.tensor([0.25, 0.75, 2.5, 3.5, 5.0]), E2M1).tolist() == [0, 1, 2, 4, 4]


def test_ulp_is_the_local_spacing():
    x = torch.tensor([0.0, 0.3, 1.0, 1.9, 2.0, 3.9, 4.0, 6.0, 50.0])
    assert ulp(x, E2M1).tolist() == [0.5, 0.5, 0.5, 0.5, 1, 1, 2, 2, 2]
    assert ulp(torch.tensor([2.0**-9, 1.0, 300.0]), E4M3).tolist() == [2.0**-9, 0.125, 32]


def test_v_moves_in_units_of_the_local_step():
    x = torch.tensor([1.0, 1.0, 4.0, 4.0, 1.9])
    v = torch.tensor([0.49, 0.51, 0.49, 0.51, 0.3])
    # 1 + .51 * .5 = 1.255 -> 1.5; 4 + .51 * 2 = 5.02 -> 6; 1.9 + .15 = 2.05 -> 2 (binade above)
    assert quantize_elements(x, E2M1, v).tolist() == [1.0, 1.5, 4.0, 6.0, 2.0]

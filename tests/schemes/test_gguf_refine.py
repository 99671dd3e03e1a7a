"""The super-block refinement of the asymmetric k-quant search (gguf_refine.py)."""
import pytest
import torch

from ar_schemes import ggml_scheme, quantize, search_kquant_params, to_groups
from ar_schemes.dtypes.gguf import GGML_TYPES
from ar_schemes.gguf_refine import refine_super_blocks, super_least_squares
from ar_schemes.gguf_search import _search_asym


def _data(rows=8, cols=1024, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * (torch.rand(cols, generator=g) + 0.2)
    w[:, 11] *= 8
    imp = torch.rand(cols, generator=g) ** 3 + 0.01
    return w, imp


def _super_errors(w, imp, s, lo, hi):
    """Weighted error per 256-weight super-block of the real quantizer."""
    dq = quantize(w, s, min_scale=lo, max_scale=hi).dequant
    return ((dq - w) ** 2 * imp).reshape(w.shape[0], -1, 256).sum(-1)


@pytest.mark.parametrize("name", ["q2_k", "q4_k", "q5_k"])
def test_refinement_lowers_error_of_every_super_block(name):
    s, t = ggml_scheme(name), GGML_TYPES[name]
    w, imp = _data()
    wg = to_groups(w, t.group)
    om = to_groups(imp.expand_as(w).contiguous(), t.group) + 1e-12
    lo, hi = _search_asym(wg, om, t, 20)
    rlo, rhi = refine_super_blocks(wg, om, t, lo, hi)
    before, after = _super_errors(w, imp, s, lo, hi), _super_errors(w, imp, s, rlo, rhi)
    assert (after <= before * (1 + 1e-5)).all()
    assert after.sum() < 0.97 * before.sum()


def test_refined_multipliers_keep_the_top_code_of_every_super_block():
    """The quantizer, given the refined multipliers, derives d from the same largest sub-group
    value, so every super-block still uses the top scale code (d is the refined one)."""
    s = ggml_scheme("q2_k")
    w, imp = _data(rows=4)
    lo, hi = search_kquant_params(w, s, imp)
    res = quantize(w, s, min_scale=lo, max_scale=hi)
    assert (res.extra["sc"].reshape(4, -1, 16).amax(-1) == 15).all()
    assert (res.extra["m"].reshape(4, -1, 16).amax(-1) == 15).all()


def test_super_least_squares_matches_float64_lstsq():
    g = torch.Generator().manual_seed(5)
    wp = torch.randn(2, 3, 8, 16, generator=g)
    op = torch.rand(2, 3, 8, 16, generator=g)
    sc = torch.randint(1, 16, (2, 3, 8), generator=g).float()
    m = torch.randint(0, 16, (2, 3, 8), generator=g).float()
    levels = torch.randint(0, 4, (2, 3, 8, 16), generator=g).float()
    d, dmin = super_least_squares(wp, op, sc, m, levels, torch.zeros(2, 3))
    for i in range(2):
        for j in range(3):
            a = (sc[i, j, :, None] * levels[i, j]).reshape(-1).double()
            b = (-m[i, j, :, None].expand(8, 16)).reshape(-1).double()
            sw = op[i, j].reshape(-1).double().sqrt()
            A = torch.stack([a, b], 1) * sw[:, None]
            sol = torch.linalg.lstsq(A, wp[i, j].reshape(-1).double() * sw).solution
            torch.testing.assert_close(torch.stack([d[i, j], dmin[i, j]]).double(), sol, rtol=1e-4, atol=1e-6)


def test_search_beats_plain_rtn_with_refinement_on():
    s = ggml_scheme("q2_k")
    w, imp = _data()
    lo, hi = search_kquant_params(w, s, imp)
    assert _super_errors(w, imp, s, lo, hi).sum() < 0.6 * _super_errors(w, imp, s, None, None).sum()

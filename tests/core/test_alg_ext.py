"""enable_alg_ext: the searched initial range, the wider clip range and the outlier-robust loss."""
import pytest
import torch
from conftest import tiny_model

from ar_core import quantize, search_clip, search_range
from ar_core.rtn import EXT_CLIP_MAX, _importance, _refit, group_error
from ar_core.signround import OUTLIER_RATIO, block_loss, make_learnables, token_weights
from ar_schemes import get_scheme


def _weights(rows=32, cols=512, seed=0, outliers=True):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * (torch.rand(cols, generator=g) * 2 + 0.1)
    imp = torch.rand(cols, generator=g) ** 4 * 10 + 1e-3
    if outliers:  # outlier input channels, important ones
        w[:, 5] *= 12
        w[:, 300] *= -9
        imp[5], imp[300] = 40.0, 25.0
    return w, imp


@pytest.mark.parametrize("name", ["W2A16G64", "W2A16", "W3A16", "W4A16", "MXFP4", "MXFP4_RCEIL", "MXFP8", "NVFP4"])
def test_ext_init_never_worse_per_group(name):
    s = get_scheme(name)
    w, imp = _weights()
    impg = _importance(w, s, imp)
    plain = search_clip(w, s, imp)
    e_plain = group_error(w, s, impg, plain, plain)
    e_ext = group_error(w, s, impg, *search_range(w, s, imp, alg_ext=True))
    assert (e_ext <= e_plain * (1 + 1e-6) + 1e-12).all(), name


@pytest.mark.parametrize("name", ["W2A16G64", "W3A16"])
def test_ext_init_lowers_low_bit_int_error(name):
    s = get_scheme(name)
    for outliers in (True, False):
        w, imp = _weights(outliers=outliers)
        impg = _importance(w, s, imp)
        plain = search_clip(w, s, imp)
        e_plain = group_error(w, s, impg, plain, plain).sum()
        e_ext = group_error(w, s, impg, *search_range(w, s, imp, alg_ext=True)).sum()
        assert e_ext < (0.995 if outliers else 0.97) * e_plain, outliers


@pytest.mark.parametrize("name", ["W2A16G64", "MXFP4", "NVFP4"])
def test_ext_multipliers_inside_tuning_range(name):
    s = get_scheme(name)
    w, imp = _weights()
    lo, hi = search_range(w, s, imp, alg_ext=True)
    for t in (lo, hi):
        assert t.min() >= 0 and t.max() <= EXT_CLIP_MAX


def test_refit_is_weighted_least_squares_float64():
    g = torch.Generator().manual_seed(3)
    wg = torch.randn(4, 6, 64, generator=g)
    impg = torch.rand(4, 6, 64, generator=g)
    s = wg.abs().amax(-1) / 2
    lv = (wg / s.unsqueeze(-1)).round().clamp(-2, 1).double()
    # closed form argmin_t sum imp (t L - w)^2 in float64
    expect = (impg.double() * lv * wg.double()).sum(-1) / (impg.double() * lv * lv).sum(-1)
    torch.testing.assert_close(_refit(wg, impg, s, 2).double(), expect, rtol=1e-5, atol=1e-7)


def test_sym_int_ext_may_flip_the_scale_sign():
    """Mostly positive weights with one negative outlier: the plain search always maps the larger
    (negative) end to -2^(b-1); the extended one may map the positive end there (a negative scale)."""
    s = get_scheme("W2A16G64")
    w = torch.rand(8, 64) * 0.5 + 0.5
    w[:, 0] = -1.05
    lo, hi = search_range(w, s, None, alg_ext=True)
    from ar_schemes import quantize as q
    plain = search_clip(w, s, None)
    assert (q(w, s, min_scale=plain, max_scale=plain).scale > 0).all()
    assert (q(w, s, min_scale=lo, max_scale=hi).scale < 0).any()
    impg = _importance(w, s, None)
    assert group_error(w, s, impg, lo, hi).sum() < group_error(w, s, impg, plain, plain).sum()


# ---- robust loss ------------------------------------------------------------------------------
def test_token_weights_are_one_without_outliers():
    y = torch.randn(2, 16, 32)
    y = y / y.pow(2).mean(-1, keepdim=True).sqrt() * (1 + torch.rand(2, 16, 1))  # RMS within [1, 2)
    assert torch.equal(token_weights(y), torch.ones(2, 16))


def test_token_weights_scale_outliers_to_the_cap():
    y = torch.randn(1, 32, 16)
    y[0, 0] *= 100
    w = token_weights(y)
    ms = y.pow(2).mean(-1)
    cap = OUTLIER_RATIO * ms.median()
    torch.testing.assert_close(w[0, 0], cap / ms[0, 0])
    assert (w[0, 1:] == 1).all()


class _Identity(torch.nn.Module):
    def forward(self, x, **kwargs):
        return x * 1.0


def test_robust_loss_equals_mse_without_outliers_and_downweights_outliers():
    y = torch.randn(2, 8, 16)
    x = y + 0.1 * torch.randn_like(y)
    blk = _Identity()
    mse = block_loss(blk, x, y, {}, False, "cpu")
    torch.testing.assert_close(block_loss(blk, x, y, {}, False, "cpu", robust=True), mse)
    y2, x2 = y.clone(), x.clone()
    y2[0, 0] *= 100
    x2[0, 0] = y2[0, 0] * 1.1  # a 10% error on a huge token dominates the plain MSE
    assert block_loss(blk, x2, y2, {}, False, "cpu", robust=True) < 0.1 * block_loss(blk, x2, y2, {}, False, "cpu")


# ---- tuning ranges ---------------------------------------------------------------------------
def test_clip_max_and_frozen_range_in_clamp():
    from ar_core.blocks import find_targets
    from ar_core.signround import _clamp
    t = find_targets(tiny_model("llama"))[0]
    s = get_scheme("W2A16G64")
    ones = torch.ones(t.shape[0], t.shape[1] // 64)
    lp = make_learnables(t, s, (ones * 3, ones * 3), "cpu", clip_max=EXT_CLIP_MAX)
    _clamp([lp])
    assert lp.min_scale.max() == EXT_CLIP_MAX
    frozen = make_learnables(t, s, (ones * 3, ones * 0.5), "cpu", tune_range=False)
    _clamp([frozen])
    assert frozen.min_scale.max() == 3 and not frozen.min_scale.requires_grad and frozen.v.requires_grad


def test_quantize_with_alg_ext_tunes_and_records_the_option(monkeypatch):
    import ar_core.signround as sr
    seen = []
    orig = sr.token_weights
    monkeypatch.setattr(sr, "token_weights", lambda y: seen.append(1) or orig(y))
    samples = torch.randint(3, 256, (4, 32), generator=torch.Generator().manual_seed(0))
    q = quantize(tiny_model("llama"), None, "W2A16G64", samples, iters=6, nsamples=4, seqlen=32, batch_size=4,
                 amp=False, enable_alg_ext=True, enable_torch_compile=False)
    assert q.options["enable_alg_ext"] is True and seen  # the robust loss ran (2-bit)
    for b in q.stats["blocks"]:
        assert b["tuned_loss"] <= b["start_loss"] or b["fell_back"]
    seen.clear()
    quantize(tiny_model("llama"), None, "W4A16G64", samples, iters=2, nsamples=4, seqlen=32, batch_size=4,
             amp=False, enable_alg_ext=True, enable_torch_compile=False)
    assert not seen  # 4-bit: plain MSE

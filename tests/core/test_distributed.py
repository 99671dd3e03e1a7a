"""Multi-device tuning on the CPU: data-parallel ranks over gloo, and a block split by device_map."""
import pytest
import torch
from conftest import tiny_model

from ar_core import (
    QuantizeError,
    parse_device_map,
    parse_devices,
    plan_device_map,
    quantize,
    spawn,
)
from ar_core import distributed as dist_

KW = dict(iters=4, seqlen=32, amp=False, enable_torch_compile=False, seed=3)
TUNED = dict(KW, iters=8, nsamples=8, batch_size=4)  # 8 steps that move thousands of codes off the start


def _samples(n=8, seq=32, seed=0):
    return torch.randint(3, 256, (n, seq), generator=torch.Generator().manual_seed(seed))


def _result(q):
    return {"layers": {n: (x.codes, x.scale, x.zero) for n, x in q.layers.items()},
            "blocks": [{k: b.get(k) for k in ("first_loss", "best_loss", "best_iter", "start_loss", "tuned_loss")}
                       for b in q.stats["blocks"]]}


def _dp_worker(rank, device, out, threads, runs):
    torch.set_num_threads(threads)
    results = [_result(quantize(tiny_model(arch), None, scheme, _samples(), **{**TUNED, **opts}))
               for arch, scheme, opts in runs]
    try:
        quantize(tiny_model("llama"), None, "W4A16", _samples(), **KW, nsamples=8, batch_size=3)
    except QuantizeError as e:
        results.append(str(e))
    if dist_.is_main():
        torch.save(results, out)


def _same_layers(a, b):
    return [n for n, (codes, scale, zero) in a["layers"].items()
            if not (torch.equal(codes, b["layers"][n][0]) and torch.equal(scale, b["layers"][n][1])
                    and torch.equal(zero, b["layers"][n][2]))]


# ---- data-parallel ----------------------------------------------------------------------------
DP_RUNS = [("llama", "W2A16G64", dict(disable_opt_rtn=True)),
           ("qwen3", "W2A16G64", dict(not_use_best_mse=True)),
           ("llama", "W4A16", dict(lr=0.05, gradient_accumulate_steps=2))]


@pytest.fixture(scope="module")
def dp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("dp") / "rank0.pt"
    spawn(_dp_worker, ["cpu", "cpu"], str(out), torch.get_num_threads(), DP_RUNS)
    return torch.load(out, weights_only=False)


@pytest.mark.parametrize("run", [0, 1])
def test_two_ranks_equal_one_process_bit_for_bit(dp_results, run):
    # 2 ranks x batch 2 of a global batch 4 == one process with batch 2 and 2 accumulation steps:
    # the same micro-batches, and two halves added in either order give the same float
    arch, scheme, opts = DP_RUNS[run]
    one = _result(quantize(tiny_model(arch), None, scheme, _samples(),
                           **{**TUNED, **opts, "batch_size": 2, "gradient_accumulate_steps": 2}))
    assert all(b["best_iter"] > 0 for b in one["blocks"]), "tuning must move for the comparison to mean much"
    assert _same_layers(dp_results[run], one) == []
    for b_dp, b_one in zip(dp_results[run]["blocks"], one["blocks"]):
        assert b_dp["best_iter"] == b_one["best_iter"]
        assert b_dp["first_loss"] == b_one["first_loss"] and b_dp["best_loss"] == b_one["best_loss"]
        assert b_dp["tuned_loss"] == pytest.approx(b_one["tuned_loss"], rel=1e-12)  # fp64 sums in another order


def test_two_ranks_with_accumulation_match_one_process_closely(dp_results):
    # with accumulation the all-reduce adds the four quarter-gradients in another order than one
    # process does, so equality holds to rounding: sign steps agree except where a gradient is ~0
    one = _result(quantize(tiny_model("llama"), None, "W4A16", _samples(),
                           **{**TUNED, "lr": 0.05, "batch_size": 2, "gradient_accumulate_steps": 4}))
    dp = dp_results[2]
    differing = sum(int((a[0] != one["layers"][n][0]).sum()) for n, a in dp["layers"].items())
    total = sum(a[0].numel() for a in dp["layers"].values())
    print(f"codes differing: {differing} of {total}")
    assert differing <= total * 1e-3, (differing, total)
    for b_dp, b_one in zip(dp["blocks"], one["blocks"]):
        assert b_dp["first_loss"] == pytest.approx(b_one["first_loss"], rel=1e-5)


def test_single_process_helpers_are_no_ops():
    assert not dist_.is_data_parallel() and dist_.is_main() and dist_.world_size() == 1
    assert dist_.local_batch_size(5) == 5 and dist_.shard_range(7) == (0, 7)
    idx = torch.arange(6)
    assert torch.equal(next(dist_.shard_batches(iter([idx]))), idx)
    assert dist_.all_reduce_sum(2.5) == 2.5 and dist_.broadcast_object({"a": 1}) == {"a": 1}


def test_batch_not_divisible_by_ranks_refused(dp_results):
    assert "batch_size=3 is the global batch of 2 data-parallel ranks" in dp_results[-1]


# ---- device lists and device maps -------------------------------------------------------------
def test_parse_devices():
    assert parse_devices("0,1", visible_gpus=2) == ["cuda:0", "cuda:1"]
    assert parse_devices("cuda:1,cuda:0", visible_gpus=2) == ["cuda:1", "cuda:0"]
    assert parse_devices("cpu,cpu", visible_gpus=0) == ["cpu", "cpu"]
    with pytest.raises(QuantizeError, match=r"device '0,1,2', entry '2': this machine has 2 CUDA GPU\(s\); "
                                            r"valid choices: cpu, or a GPU id 0\.\.1"):
        parse_devices("0,1,2", visible_gpus=2)
    with pytest.raises(QuantizeError, match="names a GPU twice"):
        parse_devices("0,cuda:0", visible_gpus=2)
    with pytest.raises(QuantizeError, match="mixes cpu with GPUs"):
        parse_devices("cpu,0", visible_gpus=1)
    with pytest.raises(QuantizeError, match=r"'gpu0' is not a device; valid choices"):
        parse_devices("gpu0", visible_gpus=1)
    with pytest.raises(QuantizeError, match=r"has 0 CUDA GPU\(s\); valid choices: cpu \(this machine has no"):
        parse_devices("0", visible_gpus=0)


def test_parse_device_map():
    assert parse_device_map("auto", visible_gpus=3).devices == ("cuda:0", "cuda:1", "cuda:2")
    assert parse_device_map("auto", visible_gpus=0).devices == ("cpu",)
    assert parse_device_map('{"mlp": 1, "self_attn": "cuda:0"}', visible_gpus=2).explicit == (
        ("mlp", "cuda:1"), ("self_attn", "cuda:0"))
    with pytest.raises(QuantizeError, match=r"device_map\['mlp'\] 4: this machine has 2"):
        parse_device_map({"mlp": 4}, visible_gpus=2)
    with pytest.raises(QuantizeError, match="not valid JSON"):
        parse_device_map("{mlp: 1}", visible_gpus=2)


def test_planner_balances_in_order():
    # four equal layers over two equal devices: two each, in module order
    assert plan_device_map([4, 4, 4, 4], [10, 10]) == ([0, 0, 1, 1], 0.8)
    # cached activations on the first device push layers to the second
    assert plan_device_map([4, 4, 4, 4], [20, 20], fixed=[8, 0]) == ([0, 1, 1, 1], 0.6)
    assert plan_device_map([4, 4, 4, 4], [20, 20], fixed=[16, 0]) == ([1, 1, 1, 1], 0.8)
    # a device with twice the free memory takes twice the share
    slots, _ = plan_device_map([1] * 9, [10, 20])
    assert slots == [0] * 3 + [1] * 6
    # an 8B-shaped block (q, k, v, o, gate, up, down) over two GPUs: attention + gate | up + down
    h, kv, i = 4096, 1024, 14336
    sizes = [h * h, kv * h, kv * h, h * h, i * h, i * h, h * i]
    slots, ratio = plan_device_map([40 * s for s in sizes], [70 << 30, 70 << 30])
    assert slots == [0, 0, 0, 0, 0, 1, 1] and ratio < 0.07
    # too big: the plan still spreads, and says so with a ratio above 1
    assert plan_device_map([10, 10], [8, 8])[1] > 1.0
    with pytest.raises(QuantizeError, match="positive capacity"):
        plan_device_map([1], [0, 5])


@pytest.mark.parametrize("device_map", ["cpu,cpu", {"self_attn": "cpu", "mlp.down_proj": "cpu"}])
def test_block_split_equals_unsplit(device_map, monkeypatch):
    import ar_core.placement as placement
    calls = []
    real = placement._inputs_to

    def counting(device):
        hook = real(device)

        def wrapped(module, args, kwargs):
            calls.append(type(module).__name__)
            return hook(module, args, kwargs)
        return wrapped
    monkeypatch.setattr(placement, "_inputs_to", counting)
    opts = dict(KW, nsamples=4, batch_size=2)
    whole = _result(quantize(tiny_model("llama"), None, "W4A16", _samples(4), **opts))
    model = tiny_model("llama")
    split = _result(quantize(model, None, "W4A16", _samples(4), device_map=device_map, **opts))
    assert _same_layers(whole, split) == [] and whole["blocks"] == split["blocks"]
    assert calls, "the placement hooks never ran"
    assert not any(m._forward_pre_hooks for m in model.modules()), "hooks left behind"


def test_auto_plan_moves_whole_submodules():
    from ar_core.placement import BlockPlacer
    model = tiny_model("llama", layers=1)
    block = model.model.layers[0]
    placer = BlockPlacer(parse_device_map("cpu,cpu"), "cpu")
    plan = placer.place(block, "model.layers.0")
    placer.release(block)
    assert set(plan.values()) == {"cpu"} and len(plan) >= 2
    assert "model.layers.0.mlp.down_proj" in plan or "model.layers.0.mlp" in plan
    assert BlockPlacer(parse_device_map("cpu"), "cpu").place(block, "model.layers.0") == {}  # nothing to split


def test_unknown_device_map_key_refused():
    with pytest.raises(QuantizeError, match=r"\['mlp\.nope'\] match no quantized module of model\.layers\.0"):
        quantize(tiny_model("llama"), None, "W4A16", _samples(4), device_map={"mlp.nope": "cpu"},
                 **dict(KW, nsamples=4, batch_size=2))


def test_owners_balance_weights_largest_first():
    # single process: everything is rank 0's
    assert dist_.owners([5, 1, 9]) == [0, 0, 0]


def test_owners_split_by_size(monkeypatch):
    monkeypatch.setattr(dist_, "world_size", lambda: 2)
    # llama-like block: q k v o gate up down (millions of weights)
    owners = dist_.owners([16, 4, 4, 16, 56, 56, 56])
    load = [sum(s for s, o in zip([16, 4, 4, 16, 56, 56, 56], owners) if o == r) for r in (0, 1)]
    assert owners[4:] == [0, 1, 0] and load == [112, 96]

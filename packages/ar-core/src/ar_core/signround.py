"""SignRound: tune the rounding and clipping of every weight in one decoder block.

For each quantized weight W (rows, in) we learn
  v          (rows, in)  rounding offset added before rounding, kept in [-0.5, 0.5];
  min_scale  (groups)    multiplier of each group's min, kept in [0, clip_max];
  max_scale  (groups)    multiplier of each group's max, kept in [0, clip_max];
(clip_max is CLIP_MAX, 2.0 with enable_alg_ext; GGUF types keep their searched multipliers, so
their sub-group and super-block scales stay as searched and only v moves)
and minimise the MSE between the block's output with quantized weights on the quantized-chain
input and the full-precision block's output on the full-precision input (computed once); with
``robust_loss`` tokens of outsized norm count by their relative error (:func:`token_weights`).
The step is signed gradient descent, p -= lr_t * sign(grad), with lr decaying linearly to 0;
the parameters of the iteration with the lowest loss are kept.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ar_schemes import QuantResult, QuantScheme, quantize

from . import distributed
from .blocks import Target
from .capture import call_block
from .errors import QuantizeError

log = logging.getLogger("ar")
CLIP_MAX = 1.25  # clip multipliers may shrink a group's range or widen it by a quarter
OUTLIER_RATIO = 4.0  # robust loss: tokens above 4x the median mean square (2x its RMS) count relatively


@dataclass(frozen=True)
class TuneConfig:
    """Options of one block's tuning (see ``ar_core.quantize`` for their meaning)."""

    iters: int = 200
    lr: float | None = None
    minmax_lr: float | None = None
    batch_size: int = 8
    gradient_accumulate_steps: int = 1
    enable_minmax_tuning: bool = True
    not_use_best_mse: bool = False
    adam: bool = False
    amp: bool = True
    seed: int = 42
    compile: bool = False  # run the block (its quantize-dequantize included) under torch.compile
    robust_loss: bool = False  # token-weighted loss (see token_weights); enable_alg_ext at <= 3 bits


@dataclass
class Learnables:
    """The tuned parameters (fp32) of one weight, beside the weight itself in its own dtype."""

    target: Target
    scheme: QuantScheme
    weight: Tensor  # (rows, in) the original weight (no copy where it already sits on the device)
    v: Tensor
    min_scale: Tensor
    max_scale: Tensor
    clip_max: float = CLIP_MAX  # upper bound of min_scale / max_scale; frozen ones (no grad) stay as given

    def params(self, minmax: bool) -> list[Tensor]:
        return [self.v, self.min_scale, self.max_scale] if minmax else [self.v]

    def quantize(self) -> QuantResult:
        return quantize(self.weight, self.scheme, self.v, self.min_scale, self.max_scale)

    def dequant(self) -> Tensor:
        """The quantize-dequantized weight (rows, in), fp32."""
        return self.quantize().dequant


@dataclass
class TuneStats:
    first_loss: float
    best_loss: float
    best_iter: int
    start_loss: float = float("nan")  # over all samples, with the starting (RTN / optimized-RTN) weights
    tuned_loss: float = float("nan")  # over all samples, with the tuned weights
    fell_back: bool = False  # tuning did not beat the start on all samples: the start is kept


def make_learnables(target: Target, scheme: QuantScheme, clip: Tensor | tuple[Tensor, Tensor],
                    device: torch.device | str, clip_max: float = CLIP_MAX, tune_range: bool = True) -> Learnables:
    """Zero rounding offsets and the given clip factors (1.0, or the optimized-RTN search): one
    tensor for both ends or a (min_scale, max_scale) pair. ``tune_range=False`` freezes them."""
    w = target.weight2d().detach().to(device=device)  # the quantizers compute in fp32 from any dtype
    lo, hi = clip if isinstance(clip, tuple) else (clip, clip)
    lo, hi = (c.to(device=device, dtype=torch.float32).clone().requires_grad_(tune_range) for c in (lo, hi))
    v = torch.zeros(w.shape, dtype=torch.float32, device=w.device).requires_grad_()
    return Learnables(target, scheme, w, v, lo, hi, clip_max)


def dequant_all(learnables: list[Learnables], dtype: torch.dtype) -> list[Tensor]:
    """The quantize-dequantized weights (rows, in) of ``learnables`` in ``dtype``."""
    return [lp.dequant().to(dtype).contiguous() for lp in learnables]


@functools.cache
def _dequant_all_compiled() -> Callable[[list[Learnables], torch.dtype], list[Tensor]]:
    # built on first use: torch.compile imports dynamo, seconds that every `ar` command would pay
    return torch.compile(dequant_all, dynamic=False)


class StepWeights:
    """The quantize-dequantized weights of one step, computed by their owners and used by all.

    Every weight has an owner rank (all rank 0's in a single process). The owner computes it from
    its learnables, keeping the autograd graph; every rank holds it as a leaf tensor in the
    compute dtype, which the block's layers use while :meth:`active`. After the backward the
    leaves' gradients are averaged onto the owner, which carries them into its learnables. So
    data-parallel ranks split the weight-side work (quantize-dequantize forward and backward,
    the sign step, the best-iteration copies) instead of each repeating all of it, and exchange
    16-bit weights and weight gradients rather than fp32 learnable gradients.
    """

    def __init__(self, learnables: list[Learnables], dtype: torch.dtype, compile: bool) -> None:
        self.learnables, self.dtype = learnables, dtype
        self.owner = distributed.owners([lp.v.numel() for lp in learnables])
        me = distributed.rank()
        self.mine = [lp for lp, o in zip(learnables, self.owner) if o == me]
        self._dequant = _dequant_all_compiled() if compile else dequant_all
        self._others = {i: torch.empty(lp.weight.shape, dtype=dtype, device=lp.v.device)
                        for i, (lp, o) in enumerate(zip(learnables, self.owner)) if o != me}
        self.leaves: list[Tensor] = []
        self._graph: list[Tensor] = []

    def make(self, grad: bool) -> None:
        """This step's weights on every rank; ``grad`` keeps the owners' graphs for :meth:`backward`."""
        with torch.set_grad_enabled(grad):
            mine = iter(self._dequant(self.mine, self.dtype))
        self._graph, self.leaves = [], []
        for i, owner in enumerate(self.owner):
            if i in self._others:
                leaf = self._others[i]
                leaf.grad = None
            else:
                dq = next(mine)
                self._graph.append(dq)
                leaf = dq.detach()
            distributed.broadcast_(leaf, owner)
            self.leaves.append(leaf.requires_grad_(grad))

    def backward(self) -> None:
        """Average the leaves' gradients onto their owners and back-propagate them into the
        owners' learnables."""
        grads = []
        for i, (leaf, owner) in enumerate(zip(self.leaves, self.owner)):
            g = leaf.grad.contiguous() if leaf.grad is not None else torch.zeros_like(leaf)
            distributed.reduce_mean_(g, owner)
            if i not in self._others:
                grads.append(g)
            leaf.grad = None
        if self._graph:  # a data-parallel rank may own none of a block's weights
            torch.autograd.backward(self._graph, grads)
        self._graph = []

    def share_learnables(self) -> None:
        """Every rank gets the owners' final learnables."""
        for lp, owner in zip(self.learnables, self.owner):
            for t in (lp.v, lp.min_scale, lp.max_scale):
                distributed.broadcast_(t.data, owner)

    @contextmanager
    def active(self) -> Iterator[None]:
        """While active, each target's module computes with this step's leaf weight."""
        handles, saved = [], []
        for i, lp in enumerate(self.learnables):
            mod, attr = lp.target.module, lp.target.attr
            saved.append((mod, attr, mod._parameters.pop(attr)))

            def hook(module: torch.nn.Module, args: Any, lp: Learnables = lp, attr: str = attr, i: int = i) -> None:
                setattr(module, attr, lp.target.to_layout(self.leaves[i]))
            handles.append(mod.register_forward_pre_hook(hook))
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            for mod, attr, p in saved:
                if attr in mod.__dict__:
                    delattr(mod, attr)
                mod._parameters[attr] = p


def _batches(n: int, size: int, seed: int) -> Iterator[Tensor]:
    """Seeded, shuffled, cyclic batches of sample indices."""
    g = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(n, generator=g)
        for i in range(0, n - size + 1 if n >= size else 1, size):
            yield perm[i:i + size]


def block_loss(block: torch.nn.Module, x: Tensor, target: Tensor, kwargs: dict[str, Any], amp: bool,
               device: torch.device | str, robust: bool = False) -> Tensor:
    """Mean squared error of the block output against the fp target, in fp32; ``robust``
    weights each token's error by :func:`token_weights` of the target."""
    dev_type = torch.device(device).type
    with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=amp):
        out = call_block(block, x.to(device), kwargs)
    target = target.to(device).float()
    if not robust:
        return torch.nn.functional.mse_loss(out.float(), target)
    per_token = (out.float() - target).pow(2).mean(-1)  # (batch, seq)
    return (per_token * token_weights(target)).mean()


def token_weights(target: Tensor) -> Tensor:
    """Weights (batch, seq) of the outlier-robust loss: 1, or ``cap / ms`` for a token whose mean
    square ``ms`` exceeds ``cap`` = OUTLIER_RATIO x the batch median.

    Why: the next consumer of a block's output is an RMSNorm/LayerNorm, which divides each token
    by its own RMS, so an error on a token matters relative to that token's norm. A few tokens
    (attention sinks, the first position) carry activations 10-1000x the others; in plain MSE
    their errors dominate and low-bit tuning spends its few levels on them. Their error is
    counted relative to their norm instead (as if scaled down to the cap); ordinary tokens keep
    plain MSE, so without outliers the loss is exactly the MSE.
    """
    ms = target.pow(2).mean(-1)  # (batch, seq)
    cap = OUTLIER_RATIO * ms.median()
    return torch.where(ms > cap, cap / ms.clamp(min=1e-30), torch.ones_like(ms))


def tune_block(block: torch.nn.Module, learnables: list[Learnables], q_inputs: Tensor, fp_targets: Tensor,
               kwargs: dict[str, Any], cfg: TuneConfig, device: torch.device | str, block_seed: int) -> TuneStats:
    """Tune ``learnables`` of one block in place; returns the first and best losses."""
    with _frozen(block):
        return _tune_block(block, learnables, q_inputs, fp_targets, kwargs, cfg, device, block_seed)


@contextmanager
def _frozen(block: torch.nn.Module) -> Iterator[None]:
    """No gradients for the block's own parameters (norms, biases, layers left in 16-bit): only
    the learnables need them."""
    trainable = [p for p in block.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)


def _tune_block(block: torch.nn.Module, learnables: list[Learnables], q_inputs: Tensor, fp_targets: Tensor,
                kwargs: dict[str, Any], cfg: TuneConfig, device: torch.device | str, block_seed: int) -> TuneStats:
    if cfg.compile:  # one graph per block class and kwargs layout, reused by every later block
        block = torch.compile(block, dynamic=False)
    iters = cfg.iters
    lr = cfg.lr if cfg.lr is not None else 1.0 / iters
    minmax_lr = cfg.minmax_lr if cfg.minmax_lr is not None else lr
    weights = StepWeights(learnables, torch.bfloat16 if cfg.amp else next(block.parameters()).dtype, cfg.compile)
    mine = weights.mine  # this rank updates only the learnables it owns
    params_v = [lp.v for lp in mine]
    params_mm = [p for lp in mine for p in (lp.min_scale, lp.max_scale)
                 if p.requires_grad] if cfg.enable_minmax_tuning else []
    opt = torch.optim.AdamW([{"params": params_v, "lr": lr}, {"params": params_mm, "lr": minmax_lr}],
                            weight_decay=0) if cfg.adam else None
    n, bs, ga = q_inputs.shape[0], min(cfg.batch_size, q_inputs.shape[0]), cfg.gradient_accumulate_steps
    batches = distributed.shard_batches(_batches(n, bs, block_seed))  # this rank's slice of each batch
    init_state = snapshot(mine, with_v=False)  # v starts at 0
    start = _full_loss(block, weights, q_inputs, fp_targets, kwargs, cfg, device)
    best = _Best(mine, keep=not cfg.not_use_best_mse, sync=torch.device(device).type == "cpu",
                 dev=learnables[0].v.device)
    with weights.active():
        for it in range(iters):
            weights.make(grad=True)
            loss_sum = torch.zeros((), device=device)
            for _ in range(ga):
                idx = next(batches)
                loss = block_loss(block, q_inputs[idx], fp_targets[idx], kwargs, cfg.amp, device,
                                  cfg.robust_loss) / ga
                loss.backward()
                loss_sum += loss.detach()
            weights.backward()
            distributed.all_reduce_mean_(loss_sum)  # every rank, the same step loss
            best.update(loss_sum, it, mine)
            if it % 25 == 0 or it == iters - 1:
                best.check_finite()
            decay = 1.0 - it / iters
            if opt is not None:
                for group, base in zip(opt.param_groups, (lr, minmax_lr)):
                    group["lr"] = base * decay
                opt.step()
                opt.zero_grad(set_to_none=True)
            else:
                _sign_step(params_v, lr * decay)
                _sign_step(params_mm, minmax_lr * decay)
            _clamp(mine)
    if not cfg.not_use_best_mse:
        restore(mine, best.state)
    best.state = []  # free the copies before the evaluation
    tuned = _full_loss(block, weights, q_inputs, fp_targets, kwargs, cfg, device)
    fell_back = start < tuned
    if fell_back:
        restore(mine, init_state)
    weights.share_learnables()
    return TuneStats(best.first_loss, float(best.loss), int(best.iter), start, tuned, fell_back)


class _Best:
    """The lowest loss so far, its iteration and (with ``keep``) the parameters that gave it.

    On accelerators the choice is made on the device (``torch.where``), so the loop never waits
    for the host; on the CPU a plain comparison is cheaper than copying every parameter each step.
    """

    def __init__(self, learnables: list[Learnables], keep: bool, sync: bool, dev: torch.device) -> None:
        # dev is given: a data-parallel rank may own none of a block's learnables
        self.keep, self.sync = keep, sync
        # on the device path the copies are the buffers updated in place; on the CPU the first
        # step always improves on inf and takes the first snapshot
        self.state = snapshot(learnables) if keep and not sync else []
        self.loss = torch.tensor(float("inf"), device=dev)
        self.iter = torch.zeros((), dtype=torch.long, device=dev)
        self.first: Tensor | None = None
        self.bad_iter = torch.full((), -1, dtype=torch.long, device=dev)

    @torch.no_grad()
    def update(self, loss: Tensor, it: int, learnables: list[Learnables]) -> None:
        loss = loss.to(self.loss.device)  # with a device_map the learnables may sit on another device
        if self.first is None:
            self.first = loss.clone()
        bad = ~torch.isfinite(loss) & (self.bad_iter < 0)
        self.bad_iter = torch.where(bad, it, self.bad_iter)
        improved = loss < self.loss
        if self.sync:
            if not bool(improved):
                return
            self.loss, self.iter = loss.clone(), torch.tensor(it)
            if self.keep:
                self.state = snapshot(learnables)
            return
        self.loss = torch.where(improved, loss, self.loss)
        self.iter = torch.where(improved, it, self.iter)
        if self.keep:
            for (v, lo, hi), lp in zip(self.state, learnables):
                imp = improved.to(v.device, non_blocking=True)
                for t, b in ((lp.v, v), (lp.min_scale, lo), (lp.max_scale, hi)):
                    torch.where(imp, t.detach(), b, out=b)  # in place: no weight-sized temporary

    def check_finite(self) -> None:
        it = int(self.bad_iter)
        if it >= 0:
            raise QuantizeError(f"the tuning loss became NaN or Inf at iteration {it}; lower --lr, or use "
                                "--disable_amp if the block overflows in bf16")

    @property
    def first_loss(self) -> float:
        return float("nan") if self.first is None else float(self.first)


@torch.no_grad()
def _full_loss(block: torch.nn.Module, weights: StepWeights, x: Tensor, y: Tensor, kwargs: dict[str, Any],
               cfg: TuneConfig, device: torch.device | str) -> float:
    """Mean loss over every sample with the current learnables (the quantity both tuned and
    untuned weights are judged by); data-parallel ranks score contiguous shards and add up."""
    weights.make(grad=False)
    bs = distributed.local_batch_size(min(cfg.batch_size, x.shape[0]))
    lo, hi = distributed.shard_range(x.shape[0])
    total = 0.0
    with weights.active():
        for i in range(lo, hi, bs):
            j = min(i + bs, hi)
            total += block_loss(block, x[i:j], y[i:j], kwargs, cfg.amp, device, cfg.robust_loss).item() * (j - i)
    return distributed.all_reduce_sum(total) / x.shape[0]


@torch.no_grad()
def _sign_step(params: list[Tensor], lr: float) -> None:
    for p in params:
        if p.grad is not None:
            p.add_(p.grad.sign(), alpha=-lr)
            p.grad = None


@torch.no_grad()
def _clamp(learnables: list[Learnables]) -> None:
    for lp in learnables:
        lp.v.clamp_(-0.5, 0.5)
        if lp.min_scale.requires_grad:  # frozen multipliers (GGUF) stay as searched
            lp.min_scale.clamp_(0.0, lp.clip_max)
            lp.max_scale.clamp_(0.0, lp.clip_max)


def snapshot(learnables: list[Learnables], with_v: bool = True) -> list[tuple[Tensor | None, Tensor, Tensor]]:
    """Copies of the tuned parameters; ``with_v=False`` records v as None (restored as zeros, the
    start of tuning), sparing a weight-sized copy."""
    return [(lp.v.detach().clone() if with_v else None, lp.min_scale.detach().clone(),
             lp.max_scale.detach().clone()) for lp in learnables]


@torch.no_grad()
def restore(learnables: list[Learnables], state: list[tuple[Tensor | None, Tensor, Tensor]]) -> None:
    """Put back a :func:`snapshot`; pending gradients are dropped."""
    for lp, (v, lo, hi) in zip(learnables, state):
        if v is None:
            lp.v.zero_()
        else:
            lp.v.copy_(v)
        lp.min_scale.copy_(lo)
        lp.max_scale.copy_(hi)
        lp.v.grad = lp.min_scale.grad = lp.max_scale.grad = None

"""AutoScheme: a scheme per layer so the model meets an average bit budget at the least estimated loss.

Three steps, each a function below:

1. **Bits** (:func:`layer_bits`): what each option costs a layer, counted exactly as the exporters
   store it: packed codes, scales and zero points (unless ``ignore_scale_zp_bits``).
2. **Sensitivity** (:func:`choose_schemes`): one backward pass of the LM cross-entropy per
   calibration sample through the full-precision model gives every searched weight W its
   gradient; with ``dW = qdq(W, option) - W`` (round-to-nearest) the loss change is scored as

   - ``fisher`` (default): ``sum(F * dW**2)``, F = the mean over samples of the squared per-sample
     gradient (the diagonal empirical Fisher);
   - ``taylor``: ``sum(|G * dW|)``, G = the mean gradient (the reference's first-order score).

   Why Fisher by default: at a trained model the first-order term ``sum(G * dW)`` nearly vanishes
   (G ~ 0 near a minimum, and the signed sum over millions of weights cancels), so it ranks layers
   on noise; the leading term of the loss change is then the second-order one, ``dW' H dW / 2``,
   and for cross-entropy the Gauss-Newton Hessian equals the Fisher information in expectation.
   Its diagonal needs one fp32 buffer per searched weight, is never negative, and grows with the
   rounding error, so a coarser option always scores worse than a finer one on the same layer.
3. **Search** (:func:`solve_budget`): layers that must share an option (q/k/v of an attention,
   gate/up of an MLP, the experts of a block: serving runtimes fuse them) form one item; the
   multiple-choice knapsack "least total score with total bits <= avg_bits x parameters" is solved
   exactly by dynamic programming over items that keeps only the Pareto front of partial choices.

The budget covers the layers that end up quantized: the searched ones and those fixed by
``layer_config``. Layers that stay 16-bit whatever the options (``ignore_layers``, the lm_head
unless ``quant_lm_head``, embeddings, shapes no option fits) are neither searched nor counted, as
the reference counts only the layers it quantizes.

>>> layer_config, report = choose_schemes(model, samples, AutoScheme(3.0, "W2A16G64,W4A16"))  # doctest: +SKIP
>>> qmodel = quantize(model, tok, AutoScheme(3.0, "W2A16G64,W4A16"), samples, iters=0)  # doctest: +SKIP
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from ar_schemes import (
    GGUF_FILE_TYPES,
    QuantScheme,
    get_scheme,
    ggml_scheme,
    gguf_tensor_type,
    key_matches,
    layer_index,
    resolve_layer_schemes,
    scheme_name,
    tensor_role,
)

from .blocks import Target, find_blocks, find_targets, lm_head_is_tied, lm_head_target
from .budget import layer_bits, nominal_bits, solve_budget
from .errors import QuantizeError
from .options import QuantizeOptions
from .quantize import unsupported_shape
from .rtn import rtn

log = logging.getLogger("ar")

METHODS = ("fisher", "taylor")
MAX_STATES = 1 << 18  # cap on the DP's Pareto front; costs are rounded up (never over budget) beyond it
# layers that serving runtimes fuse into one matmul, so they get one option (per parent module)
FUSED_SIBLINGS: tuple[tuple[str, ...], ...] = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"), ("w1", "w3"))


# ---- the request -------------------------------------------------------------------------------
@dataclass(frozen=True)
class AutoScheme:
    """Mixed-precision request: pick one of ``options`` per layer to meet ``avg_bits`` on average.

    options: scheme names, a list or one comma-separated string (``"W2A16G64,W4A16"``,
    ``"MXFP4,MXFP8"``, ``"GGUF:Q2_K_S,GGUF:Q4_K_S"``: a GGUF option is a whole mix, each layer
    taking the ggml type that mix gives it). shared_layers: groups of names / regexes whose
    matches inside one block share an option; None means the fused groups (q/k/v, gate/up, a
    block's experts), ``[]`` no sharing. nsamples / seqlen: calibration samples for the gradient
    pass (seqlen None: the samples' own length). method: ``fisher`` or ``taylor`` (module docstring).

    >>> AutoScheme(avg_bits=3.0, options="W2A16G64,W4A16").options
    ('W2A16G64', 'W4A16')
    """

    avg_bits: float
    options: tuple[str, ...] | str = ("W2A16G64", "W4A16")
    ignore_scale_zp_bits: bool = False
    shared_layers: tuple[tuple[str, ...], ...] | None = None
    nsamples: int = 8
    seqlen: int | None = None
    method: str = "fisher"

    def __post_init__(self) -> None:
        raw = self.options.split(",") if isinstance(self.options, str) else list(self.options)
        if not all(isinstance(o, str) for o in raw):
            raise QuantizeError(f"options={self.options!r} must be scheme names (see `ar list schemes`); "
                                "give custom schemes a layer_config entry instead")
        names = tuple(_canonical(o.strip()) for o in raw if o.strip())
        if not names:
            raise QuantizeError(f"options={self.options!r} names no scheme; give e.g. 'W2A16G64,W4A16'")
        if len(set(names)) != len(names):
            raise QuantizeError(f"options {list(names)} repeat a scheme; list each once")
        object.__setattr__(self, "options", names)
        if self.shared_layers is not None:
            object.__setattr__(self, "shared_layers", _shared_groups(self.shared_layers))
        if self.method not in METHODS:
            raise QuantizeError(f"method={self.method!r} is unknown; valid choices: {', '.join(METHODS)}")
        if isinstance(self.nsamples, bool) or not isinstance(self.nsamples, int) or self.nsamples < 1:
            raise QuantizeError(f"nsamples={self.nsamples!r} must be a positive integer")
        if self.seqlen is not None and (not isinstance(self.seqlen, int) or self.seqlen < 2):
            raise QuantizeError(f"seqlen={self.seqlen!r} must be an integer >= 2, or None for the samples' length")
        self._check_avg_bits()

    def bits_range(self) -> tuple[float, float]:
        """Bits per weight of the cheapest and the dearest option on a 4096 x 4096 weight."""
        bits = [nominal_bits(get_scheme(o), self.ignore_scale_zp_bits) for o in self.options]
        return min(bits), max(bits)

    def _check_avg_bits(self) -> None:
        if isinstance(self.avg_bits, bool) or not isinstance(self.avg_bits, (int, float)):
            raise QuantizeError(f"avg_bits={self.avg_bits!r} must be a number of bits per weight, e.g. 3.0")
        lo, hi = self.bits_range()
        if not lo - 1e-9 <= self.avg_bits <= hi + 1e-9:
            counted = "weight bits only" if self.ignore_scale_zp_bits else \
                "scale and zero-point bits included; ignore_scale_zp_bits counts weight bits only"
            per = ", ".join(f"{o}={nominal_bits(get_scheme(o), self.ignore_scale_zp_bits):.4g}" for o in self.options)
            raise QuantizeError(f"avg_bits={self.avg_bits} is outside what the options reach: {lo:.4g} to {hi:.4g} "
                                f"bits per weight ({per}; {counted}); choose avg_bits in that range or other options")


def _canonical(option: str) -> str:
    scheme = get_scheme(option)  # SchemeError listing the presets on an unknown name
    return scheme_name(scheme) or option


def _shared_groups(groups: Any) -> tuple[tuple[str, ...], ...]:
    if isinstance(groups, str) or not all(isinstance(g, (list, tuple)) and all(isinstance(k, str) for k in g)
                                          for g in groups):
        raise QuantizeError(f"shared_layers={groups!r} must be a list of groups, each a list of layer names or "
                            "regexes, e.g. [['q_proj', 'k_proj', 'v_proj']]")
    return tuple(tuple(g) for g in groups)


# ---- the report --------------------------------------------------------------------------------
@dataclass
class AutoSchemeReport:
    """What AutoScheme chose: one row per counted layer, and the achieved average."""

    target_bits: float
    avg_bits: float
    total_params: int
    total_bits: int
    method: str
    default: str  # the option quantize() uses as the default scheme
    rows: list[dict[str, Any]] = field(default_factory=list)  # layer, option, params, bits, score, fixed

    def table(self) -> str:
        """The chosen option per layer, then the achieved average, as plain text."""
        width = max([len(r["layer"]) for r in self.rows] + [5])
        lines = [f"{'layer':<{width}}  {'option':<22} {'params':>10} {'bits/w':>7} {'score':>10}"]
        for r in self.rows:
            score = "fixed" if r["fixed"] else f"{r['score']:.4g}"
            lines.append(f"{r['layer']:<{width}}  {r['option']:<22} {r['params']:>10} "
                         f"{r['bits'] / r['params']:>7.3f} {score:>10}")
        lines.append(f"average {self.avg_bits:.4f} bits per weight over {self.total_params} weights "
                     f"(target {self.target_bits}, {self.method} scores)")
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly record for ``QuantizedModel.stats``."""
        return {"target_bits": self.target_bits, "avg_bits": round(self.avg_bits, 5), "method": self.method,
                "total_params": self.total_params, "layers": {r["layer"]: r["option"] for r in self.rows}}


# ---- choosing ----------------------------------------------------------------------------------
@dataclass
class _Layer:
    target: Target
    schemes: list[QuantScheme | None]  # per option; None: the option cannot take this layer
    scores: list[float] = field(default_factory=list)


def choose_schemes(model: nn.Module, samples: Tensor | Sequence[Tensor], auto_scheme: AutoScheme, *,
                   layer_config: dict[str, Any] | None = None, ignore_layers: Sequence[str] = (),
                   quant_lm_head: bool = False, device: str = "cpu") -> tuple[dict[str, Any], AutoSchemeReport]:
    """Pick an option per layer; returns ``(layer_config, report)`` for :func:`ar_core.quantize`.

    ``layer_config`` (returned) holds the given entries plus one exact entry per searched layer: a
    preset name, or a QuantScheme for a layer's ggml type under a GGUF option. Given entries stay
    fixed and count in the budget; dict overrides apply to the first option. ``samples``: token ids
    (N, L). The model is not modified; it runs on ``device`` for the gradient pass.
    """
    auto, user = auto_scheme, dict(layer_config or {})
    blocks = find_blocks(model)
    searched, fixed = _classify(model, blocks, auto, user, tuple(ignore_layers), quant_lm_head)
    groups = _groups(list(searched), blocks, auto.shared_layers)
    items = [_group_options(searched, g, auto) for g in groups]
    counted = [searched[n].target for g, (valid, _) in zip(groups, items) if valid for n in g]
    total_params = sum(math.prod(t.shape) for t in counted + [t for t, _ in fixed.values()])
    if not total_params:
        raise QuantizeError("AutoScheme found no layer to quantize: every target is ignored or kept 16-bit")
    fixed_bits = sum(layer_bits(t.shape, s, auto.ignore_scale_zp_bits) for t, s in fixed.values())
    _check_feasible(items, fixed_bits, total_params, auto)
    _score_layers(model, searched, samples, auto, device)
    choice = _solve(items, groups, searched, math.floor(auto.avg_bits * total_params) - fixed_bits)
    report = AutoSchemeReport(auto.avg_bits, 0.0, total_params, fixed_bits, auto.method, auto.options[0])
    out = dict(user)
    for name, (t, s) in fixed.items():
        if not any(key_matches(k, name) for k in user):
            out[name] = s  # the lm_head under quant_lm_head
        report.rows.append(_row(name, t, _label(s), layer_bits(t.shape, s, auto.ignore_scale_zp_bits), 0.0, True))
    for group, (valid, _), pick in zip(groups, items, choice):
        for name in group:
            out[name] = _record_choice(searched[name], valid[pick], auto, report) if valid else "BF16"
    report.avg_bits = report.total_bits / total_params
    log.info("AutoScheme chose:\n%s", report.table())
    return out, report


def _record_choice(layer: _Layer, opt: int, auto: AutoScheme, report: AutoSchemeReport) -> str | QuantScheme:
    """Add a searched layer's row to the report; returns its layer_config value."""
    s, option = layer.schemes[opt], auto.options[opt]
    bits = layer_bits(layer.target.shape, s, auto.ignore_scale_zp_bits)
    report.total_bits += bits
    report.rows.append(_row(layer.target.name, layer.target, _label(s, option), bits, layer.scores[opt], False))
    return option if s == get_scheme(option) else s  # type: ignore[return-value]


def _classify(model: nn.Module, blocks: list[str], auto: AutoScheme, user: dict[str, Any], ignore: tuple[str, ...],
              quant_lm_head: bool) -> tuple[dict[str, _Layer], dict[str, tuple[Target, QuantScheme]]]:
    """Searched layers (with their scheme per option) and the counted fixed ones (with their scheme)."""
    ctx = _mix_context(model, len(blocks))
    default = get_scheme(auto.options[0])
    searched: dict[str, _Layer] = {}
    fixed: dict[str, tuple[Target, QuantScheme]] = {}
    for t in (t for b in blocks for t in find_targets(model.get_submodule(b), b)):
        if any(key_matches(k, t.name) for k in ignore):
            continue
        if any(key_matches(k, t.name) for k in user):
            s = resolve_layer_schemes([t.name], default, user)[t.name]
            if s is not None and not unsupported_shape(t.shape, s):
                fixed[t.name] = (t, s)
            continue
        searched[t.name] = _Layer(t, [_option_scheme(o, t, ctx) for o in auto.options])
    head = lm_head_target(model)
    if head is not None and not any(key_matches(k, head.name) for k in ignore):
        s = _head_scheme(model, head, auto, user, quant_lm_head, ctx)
        if s is not None:
            fixed[head.name] = (head, s)
    return searched, fixed


def _head_scheme(model: nn.Module, head: Target, auto: AutoScheme, user: dict[str, Any], quant_lm_head: bool,
                 ctx: dict[str, int]) -> QuantScheme | None:
    """The lm_head is never searched: as quantize() plans it (quant_lm_head or an exact layer_config
    entry, untied), it takes its layer_config scheme, else the option with the most bits."""
    if not (quant_lm_head or head.name in user) or lm_head_is_tied(model):
        return None
    if any(key_matches(k, head.name) for k in user):
        s = resolve_layer_schemes([head.name], get_scheme(auto.options[0]), user)[head.name]
    else:
        fits = [s for s in (_option_scheme(o, head, ctx) for o in auto.options) if s is not None]
        s = max(fits, key=lambda x: layer_bits(head.shape, x), default=None)
    return None if s is None or unsupported_shape(head.shape, s) else s


def _mix_context(model: nn.Module, n_layers: int) -> dict[str, int]:
    """What llama.cpp's mix rules need besides a tensor's name: layer count, GQA ratio, experts."""
    cfg = getattr(model, "config", None)
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    heads = getattr(cfg, "num_attention_heads", None) or 1
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    experts = getattr(cfg, "num_local_experts", None) or getattr(cfg, "num_experts", None) or 0
    return {"n_layers": n_layers, "n_gqa": max(1, heads // kv), "n_expert": int(experts)}


def _option_scheme(option: str, t: Target, ctx: dict[str, int]) -> QuantScheme | None:
    """The scheme ``option`` gives layer ``t``; None when it cannot take the layer's shape."""
    s = get_scheme(option)
    if s.gguf and s.gguf.lower() in GGUF_FILE_TYPES:  # a mix: the ggml type of this tensor
        ggml = gguf_tensor_type(s.gguf, tensor_role(t.name), layer_index(t.name), ctx["n_layers"], t.shape[1],
                                ctx["n_gqa"], ctx["n_expert"])
        return None if ggml == "f16" else ggml_scheme(ggml)
    if s.is_quantized and unsupported_shape(t.shape, s):
        return None
    return s


def _label(s: QuantScheme, option: str | None = None) -> str:
    name = scheme_name(s)
    if option and name != option:
        return f"{option}:{s.gguf}" if s.gguf else option
    return name or (s.gguf or f"{s.data_type}{s.bits} g{s.group_size}")


def _row(name: str, t: Target, option: str, bits: int, score: float, fixed: bool) -> dict[str, Any]:
    return dict(layer=name, option=option, params=math.prod(t.shape), bits=bits, score=score, fixed=fixed)


# ---- groups of layers that share an option ----------------------------------------------------
def _groups(names: list[str], blocks: list[str], shared: tuple[tuple[str, ...], ...] | None) -> list[list[str]]:
    """Disjoint groups covering ``names`` (in order): fused siblings and experts, or the given patterns."""
    block_of = {n: next((b for b in blocks if n.startswith(b + ".")), "") for n in names}
    keyed: dict[Any, list[str]] = {}
    for n in names:
        for key in (_default_keys(n, block_of[n]) if shared is None else _pattern_keys(n, block_of[n], shared)):
            keyed.setdefault(key, []).append(n)
    return _union([[n] for n in names] + list(keyed.values()), names)


def _default_keys(name: str, block: str) -> list[Any]:
    if block and ".experts." in name[len(block):] + ".":
        return [(block, "experts")]
    parent, _, leaf = name.rpartition(".")
    return [(parent, i) for i, leaves in enumerate(FUSED_SIBLINGS) if leaf in leaves]


def _pattern_keys(name: str, block: str, shared: tuple[tuple[str, ...], ...]) -> list[Any]:
    return [(block, i) for i, group in enumerate(shared) if any(key_matches(k, name) for k in group)]


def _union(groups: list[list[str]], order: list[str]) -> list[list[str]]:
    """Merge groups that share a member (union-find); groups come out in ``order`` of first member."""
    root = {n: n for n in order}

    def find(x: str) -> str:
        while root[x] != x:
            root[x] = root[root[x]]
            x = root[x]
        return x
    for g in groups:
        for other in g[1:]:
            root[find(other)] = find(g[0])
    merged: dict[str, list[str]] = {}
    for n in order:
        merged.setdefault(find(n), []).append(n)
    return list(merged.values())


# ---- scoring and solving ----------------------------------------------------------------------
def _group_options(searched: dict[str, _Layer], group: list[str], auto: AutoScheme) -> tuple[list[int], list[int]]:
    """Options every member can take, and the group's exact bits under each."""
    valid = [i for i in range(len(auto.options)) if all(searched[n].schemes[i] is not None for n in group)]
    bits = [sum(layer_bits(searched[n].target.shape, searched[n].schemes[i], auto.ignore_scale_zp_bits)
                for n in group) for i in valid]
    return valid, bits


def _check_feasible(items: list[tuple[list[int], list[int]]], fixed_bits: int, total: int,
                    auto: AutoScheme) -> None:
    """Fail before the gradient pass when even the cheapest options exceed the budget."""
    cheapest = fixed_bits + sum(min(bits) for valid, bits in items if valid)
    if cheapest > math.floor(auto.avg_bits * total):
        least = math.ceil(cheapest / total * 1e4) / 1e4
        raise QuantizeError(f"avg_bits={auto.avg_bits} cannot be met on this model: the cheapest options "
                            f"{list(auto.options)} give {cheapest / total:.4f} bits per weight over its {total} "
                            f"counted weights (layers fixed by layer_config included); use avg_bits >= {least}, "
                            "a cheaper option, or fewer fixed layers")


def _score_layers(model: nn.Module, searched: dict[str, _Layer], samples: Tensor | Sequence[Tensor],
                  auto: AutoScheme, device: str) -> None:
    """Fill each layer's score per option from one gradient pass; scores are freed per layer."""
    todo = [x for x in searched.values() if sum(s is not None for s in x.schemes) > 1]
    if not todo:
        for x in searched.values():
            x.scores = [0.0] * len(x.schemes)
        return
    stats = gradient_stats(model, [x.target for x in todo], _rows(samples, auto), auto.method, device)
    for x in searched.values():
        stat = stats.pop(x.target.name, None)
        x.scores = [0.0 if s is None or stat is None else _score(x.target, stat, s, auto.method) for s in x.schemes]
        if not all(math.isfinite(v) for v in x.scores):
            raise QuantizeError(f"AutoScheme scores of {x.target.name} are not finite ({x.scores}); the model "
                                "gives NaN/Inf gradients on the calibration samples")


def _score(t: Target, stat: Tensor, scheme: QuantScheme, method: str) -> float:
    if not scheme.is_quantized:
        return 0.0
    w = t.weight2d().to(stat.device).float()  # (rows, in)
    dw = rtn(w, scheme).dequant - w
    term = stat * dw.square() if method == "fisher" else (stat * dw).abs()
    return float(term.sum(dtype=torch.float64))


def _solve(items: list[tuple[list[int], list[int]]], groups: list[list[str]], searched: dict[str, _Layer],
           budget: int) -> list[int]:
    """solve_budget on the groups that have options, costs rounded up to keep the front under MAX_STATES."""
    losses = [[sum(searched[n].scores[i] for n in g) for i in valid] for g, (valid, _) in zip(groups, items)]
    live = [k for k, (valid, _) in enumerate(items) if valid]
    res = max(1, -(-budget // MAX_STATES))
    if sum(-(-min(items[k][1]) // res) for k in live) > budget // res:
        res = 1  # rounding made a barely feasible budget infeasible: solve exactly
    problem = [[(-(-b // res), loss) for b, loss in zip(items[k][1], losses[k])] for k in live]
    picks = dict(zip(live, solve_budget(problem, budget // res)))
    return [picks.get(k, -1) for k in range(len(items))]


# ---- the gradient pass ------------------------------------------------------------------------
def gradient_stats(model: nn.Module, targets: Sequence[Target], samples: Sequence[Tensor], method: str = "fisher",
                   device: str = "cpu") -> dict[str, Tensor]:
    """Per target, a (rows, in) fp32 tensor: the mean over samples of the squared gradient of the LM
    loss (``fisher``) or of the gradient (``taylor``). One backward per sample; each weight's gradient
    is folded into its buffer as soon as it is computed and then freed, and only the targets get
    gradients (never the embeddings). The model runs on ``device`` and goes back where it was."""
    home = _single_device(model)
    dev = torch.device(device)
    flags = [(p, p.requires_grad) for p in model.parameters()]
    acc: dict[str, Tensor] = {}
    handles = []
    try:
        if home is not None and home != dev:
            model.to(dev)
        for p, _ in flags:
            p.requires_grad_(False)
        for t in targets:
            t.param.requires_grad_(True)
            handles.append(t.param.register_post_accumulate_grad_hook(partial(_fold, t.name, acc, method)))
        with torch.enable_grad():
            for i, row in enumerate(samples):
                _backward(model, row, dev, i)
    finally:
        for h in handles:
            h.remove()
        for p, flag in flags:
            p.requires_grad_(flag)
        for t in targets:
            t.param.grad = None
        if home is not None and home != dev:
            model.to(home)
    return {t.name: _as_2d(t, acc[t.name] / len(samples)) for t in targets if t.name in acc}


def _backward(model: nn.Module, row: Tensor, device: torch.device, index: int) -> None:
    x = row.reshape(1, -1).to(device)  # (1, seq)
    loss = model(input_ids=x, labels=x, use_cache=False).loss
    if not torch.isfinite(loss):
        raise QuantizeError(f"calibration sample {index} gives a non-finite LM loss ({loss.item()}); check the "
                            "model weights and the samples")
    loss.backward()


def _fold(name: str, acc: dict[str, Tensor], method: str, p: Tensor) -> None:
    g = p.grad.detach().float()  # type: ignore[union-attr]
    g = g.square() if method == "fisher" else g
    if name in acc:
        acc[name].add_(g)
    else:
        acc[name] = g if method == "fisher" else g.clone()  # never keep autograd's own buffer
    p.grad = None


def _as_2d(t: Target, x: Tensor) -> Tensor:
    """A tensor in the parameter's layout seen as the target's (rows, in)."""
    return x.t() if t.kind == "conv1d" else x.reshape(t.shape)


def _single_device(model: nn.Module) -> torch.device | None:
    devices = {p.device for p in model.parameters()}
    return devices.pop() if len(devices) == 1 else None


def _rows(samples: Tensor | Sequence[Tensor], auto: AutoScheme) -> list[Tensor]:
    """The first ``nsamples`` samples as 1-D token ids, cut to ``seqlen``."""
    data = list(samples) if isinstance(samples, Tensor) else list(samples)
    rows = [torch.as_tensor(r["input_ids"] if isinstance(r, dict) else r).reshape(-1).long()
            for r in data[:auto.nsamples]]
    rows = [r[:auto.seqlen] if auto.seqlen else r for r in rows]
    if not rows or any(r.numel() < 2 for r in rows):
        raise QuantizeError(f"AutoScheme needs calibration samples of at least 2 tokens; got {len(rows)} samples")
    if len(rows) < auto.nsamples:
        log.warning("AutoScheme: %d calibration samples given, nsamples=%d asked; scoring with %d",
                    len(rows), auto.nsamples, len(rows))
    return rows


# ---- inside quantize() -------------------------------------------------------------------------
def plan_auto_scheme(model: nn.Module, tokenizer: Any, auto: AutoScheme, dataset: Any, options: dict[str, Any]
                     ) -> tuple[QuantScheme, dict[str, Any], AutoSchemeReport]:
    """What quantize() does with ``scheme=AutoScheme(...)``: choose, then return the default scheme,
    the options with the chosen ``layer_config``, and the report."""
    opts = QuantizeOptions.build(**options)
    if dataset is None:
        raise QuantizeError("AutoScheme needs calibration samples for its gradient pass: pass token samples or "
                            "a dataset callable such as ar_calib.load_samples")
    data: Any = dataset
    if callable(dataset):
        data = dataset(tokenizer, auto.nsamples, auto.seqlen or opts.seqlen, opts.seed)
    layer_config, report = choose_schemes(model, data, auto, layer_config=opts.layer_config,
                                          ignore_layers=opts.ignore_layers, quant_lm_head=opts.quant_lm_head,
                                          device=opts.device)
    return get_scheme(report.default), {**options, "layer_config": layer_config}, report

"""The block-wise quantization loop: capture inputs, then for each decoder block compute the fp
targets, tune (or round) its weights, and feed the quantized block's output to the next one."""
from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ar_schemes import (
    GGUF_FILE_TYPES,
    QuantizedLayer,
    QuantizedModel,
    QuantScheme,
    get_scheme,
    gguf_layer_schemes,
    resolve_layer_schemes,
    scale_shape,
)

from . import distributed
from .blocks import Target, find_blocks, find_targets, lm_head_is_tied, lm_head_target
from .capture import call_block, capture_inputs, move_kwargs
from .errors import QuantizeError
from .options import QuantizeOptions
from .placement import placer_for, spans_devices
from .resume import WorkDir
from .rtn import EXT_CLIP_MAX, optimized_rtn, rtn, search_range
from .signround import CLIP_MAX, Learnables, TuneConfig, make_learnables, restore, snapshot, tune_block

if TYPE_CHECKING:
    from .autoscheme import AutoScheme

log = logging.getLogger("ar")

Dataset = Tensor | Sequence[Tensor] | Callable[..., Sequence[Tensor]]


def quantize(model: nn.Module, tokenizer: Any = None, scheme: str | dict | QuantScheme | AutoScheme = "W4A16",
             dataset: Dataset | None = None, **options: Any) -> QuantizedModel:
    """Quantize every decoder-block weight of a transformers causal LM, block by block.

    ``dataset``: token samples (a (N, seqlen) tensor or a list of 1-D tensors), or a callable
    ``(tokenizer, nsamples, seqlen, seed) -> samples`` such as ``ar_calib.load_samples``.
    ``options``: see :class:`ar_core.QuantizeOptions` (iters=0 is optimized RTN; add
    disable_opt_rtn=True for plain RTN). The model is left fake-quantized in place.
    ``scheme=AutoScheme(avg_bits, options)`` first picks a scheme per layer (mixed precision).

    >>> qmodel = quantize(model, tok, "W4A16", samples, iters=50)  # doctest: +SKIP
    """
    from .autoscheme import AutoScheme, plan_auto_scheme  # imported here: autoscheme imports this module
    auto_report = None
    if isinstance(scheme, AutoScheme):
        scheme, options, auto_report = plan_auto_scheme(model, tokenizer, scheme, dataset, options)
    opts = QuantizeOptions.build(**options)
    default = get_scheme(scheme)
    start = time.time()
    if opts.enable_deterministic_algorithms:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(opts.seed)
    block_names = find_blocks(model)
    plan, skipped = plan_layers(model, block_names, default, opts)
    needs_data = any(plan.values()) and (opts.iters > 0 or not opts.disable_opt_rtn)
    samples = _samples(dataset, tokenizer, opts) if needs_data else None
    opts, samples = distributed.prepare(opts, samples, model)  # data-parallel rank / device_map set-up
    qmodel = QuantizedModel(layers={}, default_scheme=default, block_names=block_names, options=opts.record(),
                            skipped=skipped)
    _reset_peak_memory(opts.device)
    with torch.no_grad(), _cpu_tuning_attention(model, opts, samples):
        _run_blocks(model, block_names, plan, samples, opts, qmodel)
    _quantize_lm_head(model, plan, opts, qmodel)
    qmodel.stats.update(seconds=round(time.time() - start, 1), peak_memory_gb=_peak_memory_gb(opts.device),
                        layers_quantized=len(qmodel.layers), layers_skipped=len(qmodel.skipped))
    if auto_report is not None:
        qmodel.stats["auto_scheme"] = auto_report.summary()
    return qmodel


# ---- which layer gets which scheme -----------------------------------------------------------
def plan_layers(model: nn.Module, block_names: list[str], default: QuantScheme, opts: QuantizeOptions
                ) -> tuple[dict[str, QuantScheme | None], dict[str, str]]:
    """Scheme (None: 16-bit) of every target in the blocks and of lm_head, and why each None."""
    targets = [t for b in block_names for t in find_targets(model.get_submodule(b), b)]
    head = lm_head_target(model)
    if head is not None:
        targets.append(head)
    plan = resolve_layer_schemes([t.name for t in targets], default, opts.layer_config, opts.ignore_layers)
    reasons = {n: "ignored by layer_config / ignore_layers" for n, s in plan.items() if s is None}
    for name, s in _gguf_mix(model, targets, plan, default).items():
        plan[name] = s
        if s is None:
            reasons[name] = "no ggml type of the GGUF mix fits its row length"
    if head is not None and not opts.quant_lm_head and head.name not in opts.layer_config:
        plan[head.name] = None
        reasons[head.name] = "lm_head stays 16-bit (pass quant_lm_head to quantize it)"
    elif head is not None and plan[head.name] is not None and lm_head_is_tied(model):
        plan[head.name] = None
        reasons[head.name] = "lm_head is tied to the input embeddings; untie it to quantize"
    for t in targets:
        s = plan[t.name]
        why = unsupported_shape(t.shape, s) if s is not None else None
        if why:
            plan[t.name] = None
            reasons[t.name] = f"{why} (scheme {s.data_type} g{s.group_size})"
    for name, why in reasons.items():
        log.info("keeping %s in 16-bit: %s", name, why)
    return plan, reasons


def _gguf_mix(model: nn.Module, targets: list[Target], plan: dict[str, QuantScheme | None],
              default: QuantScheme) -> dict[str, QuantScheme | None]:
    """A GGUF file-type preset (``GGUF:Q4_K_M``) types the layers left at it as llama.cpp's mix
    does (attn_v / ffn_down get more bits, rows that are not whole blocks fall back), so each
    layer is searched and tuned in the ggml type the GGUF exporter will write."""
    if default.data_type not in ("int_dq", "int_ggml") or (default.gguf or "").lower() not in GGUF_FILE_TYPES:
        return {}
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = int(getattr(cfg, "num_attention_heads", 1) or 1)
    n_gqa = heads // int(getattr(cfg, "num_key_value_heads", None) or heads)
    n_expert = int(getattr(cfg, "num_local_experts", 0) or getattr(cfg, "num_experts", 0) or 0)
    names = [t.name for t in targets if plan[t.name] == default]
    return gguf_layer_schemes(default, names, int(cfg.num_hidden_layers), shapes={t.name: t.shape for t in targets},
                              n_gqa=n_gqa, n_expert=n_expert)


def unsupported_shape(shape: tuple[int, int], scheme: QuantScheme) -> str | None:
    """Why a (rows, in) weight cannot take ``scheme``, or None."""
    inp = shape[1]
    g = scheme.group_size
    if scheme.data_type in ("int", "int_dq") and inp % 32:
        return f"in_features {inp} is not a multiple of 32"
    if isinstance(g, int) and g > 0 and scheme.data_type != "int" and inp % g:
        return f"in_features {inp} is not a multiple of group_size {g}"
    if scheme.data_type == "int_dq" and inp % 256:
        return f"in_features {inp} is not a multiple of the 256-wide GGUF super-block"
    return None


# ---- calibration samples ---------------------------------------------------------------------
def _samples(dataset: Dataset | None, tokenizer: Any, opts: QuantizeOptions) -> Tensor:
    if dataset is None:
        raise QuantizeError("a calibration dataset is needed for tuning or optimized RTN: pass token samples "
                            "(e.g. ar_calib.load_samples(...)) or use iters=0 with disable_opt_rtn=True")
    data = dataset(tokenizer, opts.nsamples, opts.seqlen, opts.seed) if callable(dataset) else dataset
    rows = [d["input_ids"] if isinstance(d, dict) else d for d in data]
    rows = [r.reshape(-1) for r in (rows if not isinstance(rows, Tensor) else list(rows))]
    if len(rows) < opts.nsamples:
        raise QuantizeError(f"the dataset gave {len(rows)} samples but nsamples={opts.nsamples}; "
                            "lower --nsamples or --seqlen, or give more text")
    rows = rows[:opts.nsamples]
    lengths = {int(r.numel()) for r in rows}
    if len(lengths) != 1:
        raise QuantizeError(f"calibration samples must have one length, got lengths {sorted(lengths)[:5]}")
    return torch.stack(rows).long()


# ---- the block loop --------------------------------------------------------------------------
def _run_blocks(model: nn.Module, block_names: list[str], plan: dict[str, QuantScheme | None],
                samples: Tensor | None, opts: QuantizeOptions, qmodel: QuantizedModel) -> None:
    device = torch.device(opts.device)
    amp = _use_amp(device) if opts.amp is None else opts.amp
    blocks = [model.get_submodule(b) for b in block_names]
    home = next(model.parameters()).device  # finished blocks go back there: the device holds one block
    work = WorkDir(opts.work_dir, _fingerprint(model, plan, opts, samples)) if opts.work_dir else None
    first = distributed.main_then_broadcast(lambda: work.start(opts.resume)) if work else 0
    if samples is None:
        fp_in = q_in = None
        kwargs: list[dict[str, Any]] = [{} for _ in blocks]
    else:
        cache = torch.device("cpu") if opts.low_gpu_mem_usage else device
        inputs = _capture(model, blocks, samples, device, cache)
        kwargs = inputs.kwargs
        fp_in = q_in = inputs.hidden
    if first:
        log.info("resuming after block %d of %d (recomputing its activations)", first, len(blocks))
    for i in range(first):  # resume: finished blocks are loaded, and their outputs recomputed
        layers, stats = work.load_block(i)
        qmodel.stats.setdefault("blocks", []).append(stats)
        if fp_in is None:
            _apply_layers(model, layers, qmodel)
            continue
        blocks[i].to(device)
        kw = move_kwargs(kwargs[i], device, next(blocks[i].parameters()).dtype)
        fp_out = _forward_all(blocks[i], fp_in, kw, opts, amp, inplace=_fp_inplace(fp_in, q_in, opts))
        _apply_layers(model, layers, qmodel)
        q_in = _forward_all(blocks[i], q_in, kw, opts, amp, inplace=True) if opts.enable_quanted_input else fp_out
        fp_in = fp_out
        blocks[i].to(home)
    bar = tqdm(range(first, len(blocks)), desc="quantizing blocks", unit="block",
               disable=not distributed.is_main())
    placer = placer_for(opts, fp_in)
    for i in bar:
        block, name = blocks[i], block_names[i]
        block.to(device)
        if placer is not None:
            placer.place(block, name)
        targets = [(t, plan[t.name]) for t in find_targets(block, name) if plan.get(t.name) is not None]
        kw = move_kwargs(kwargs[i], device, next(block.parameters()).dtype)
        fp_in, q_in, stats = _quantize_block(block, targets, fp_in, q_in, kw, opts, i, amp, qmodel)
        stats["block"] = name
        qmodel.stats.setdefault("blocks", []).append(stats)
        if "best_loss" in stats:
            bar.set_postfix(loss=f"{stats['best_loss']:.3g}")
            sec = stats.get("seconds", {})
            log.info("%s: loss %.4g -> %.4g (best at iter %d); %.1f s (%s)", name, stats["first_loss"],
                     stats["best_loss"], stats["best_iter"], sum(sec.values()),
                     ", ".join(f"{k} {v:.1f}" for k, v in sec.items()))
        if placer is not None:
            placer.release(block)
        block.to(home)
        if work is not None and distributed.is_main():
            work.save_block(i, [qmodel.layers[t.name] for t, _ in targets], stats)
    model.to(home)  # the embeddings went to the tuning device for the calibration pass


def _capture(model: nn.Module, blocks: list[nn.Module], samples: Tensor, device: torch.device,
             cache: torch.device):
    """Block-0 inputs and per-block kwargs, with the embedding layers on ``device``."""
    inside = {id(m) for b in blocks for m in b.modules()}
    moved = [m for m in model.modules() if id(m) not in inside and not list(m.children())]
    for m in moved:
        m.to(device)
    return capture_inputs(model, blocks, samples, device, cache)


def _quantize_block(block: nn.Module, targets: list[tuple[Target, QuantScheme]], fp_in: Tensor | None,
                    q_in: Tensor | None, kwargs: dict[str, Any], opts: QuantizeOptions, index: int, amp: bool,
                    qmodel: QuantizedModel) -> tuple[Tensor | None, Tensor | None, dict[str, Any]]:
    device = torch.device(opts.device)
    stats: dict[str, Any] = {}
    _check_finite_weights(targets)
    if fp_in is None:  # plain RTN: no data needed
        for t, s in targets:
            _record(t, s, rtn(t.weight2d().to(device), s), qmodel)
        return None, None, stats
    timer = _Timer(device)
    imatrix = _imatrix_hooks(targets)
    fp_out = _forward_all(block, fp_in, kwargs, opts, amp, inplace=_fp_inplace(fp_in, q_in, opts))
    if not torch.isfinite(fp_out).all():
        raise QuantizeError(f"block {index} of the full-precision model gives NaN/Inf activations on the "
                            "calibration samples; check the model weights, or use --disable_amp if bf16 overflows")
    importance = {t.name: distributed.all_reduce_sum_(imatrix.pop(t.name, None)) for t, _ in targets}
    for h in imatrix.pop("__handles__"):
        h.remove()
    timer.lap("fp_forward")
    if opts.iters > 0 and targets:
        stats = _tune(block, targets, importance, q_in if opts.enable_quanted_input else fp_in, fp_out, kwargs,
                      opts, index, amp, qmodel, timer)
    else:
        for t, s in targets:
            w = t.weight2d()  # on its device_map device (with its importance), else on the tuning device
            res = rtn(w, s) if opts.disable_opt_rtn else \
                optimized_rtn(w, s, importance[t.name], opts.enable_alg_ext)[0]
            _record(t, s, res, qmodel)
    timer.lap("quantize")
    q_out = _forward_all(block, q_in, kwargs, opts, amp, inplace=True) if opts.enable_quanted_input else fp_out
    timer.lap("q_forward")
    stats["seconds"] = timer.seconds
    return fp_out, q_out, stats


def _tune(block: nn.Module, targets: list[tuple[Target, QuantScheme]], importance: dict[str, Tensor | None],
          x: Tensor, y: Tensor, kwargs: dict[str, Any], opts: QuantizeOptions, index: int, amp: bool,
          qmodel: QuantizedModel, timer: _Timer) -> dict[str, Any]:
    device = torch.device(opts.device)
    learnables = _starts(targets, importance, opts)
    cfg = TuneConfig(iters=opts.iters, lr=opts.lr, minmax_lr=opts.minmax_lr, batch_size=opts.batch_size,
                     gradient_accumulate_steps=opts.gradient_accumulate_steps,
                     enable_minmax_tuning=opts.enable_minmax_tuning, not_use_best_mse=opts.not_use_best_mse,
                     adam=opts.adam, amp=amp, seed=opts.seed,
                     compile=_use_compile(opts, device) and not spans_devices(block),
                     robust_loss=opts.enable_alg_ext and min(s.bits for _, s in targets) <= 3)
    timer.lap("search")
    st = _tune_with_retries(block, learnables, x, y, kwargs, cfg, device, opts.seed * 100_003 + index)
    if st.fell_back:
        log.warning("block %d: tuning did not lower the loss over all samples (%.4g vs %.4g at the start); "
                    "keeping the %s weights", index, st.tuned_loss, st.start_loss,
                    "RTN" if opts.disable_opt_rtn else "optimized-RTN")
    with torch.no_grad():
        for lp in learnables:
            _record(lp.target, lp.scheme, lp.quantize(), qmodel)
    return {"first_loss": st.first_loss, "best_loss": st.best_loss, "best_iter": st.best_iter,
            "start_loss": st.start_loss, "tuned_loss": st.tuned_loss, "fell_back": st.fell_back}


def _starts(targets: list[tuple[Target, QuantScheme]], importance: dict[str, Tensor | None],
            opts: QuantizeOptions) -> list[Learnables]:
    """Learnables of every target at its starting range; data-parallel ranks search the ranges
    of the weights they own in tuning and share them."""
    owners = distributed.owners([t.weight2d().numel() for t, _ in targets])
    learnables = []
    for (t, s), owner in zip(targets, owners):
        w = t.weight2d()  # on its device_map device, else on the tuning device
        if owner == distributed.rank():
            learnables.append(_start(t, s, w, importance[t.name], opts))
        else:  # placeholders, overwritten by the owner's broadcast
            ones = torch.ones(scale_shape(tuple(w.shape), s), device=w.device)
            learnables.append(make_learnables(t, s, (ones, ones.clone()), w.device, clip_max=_clip_max(opts),
                                              tune_range=_tunes_range(s)))
    for lp, owner in zip(learnables, owners):
        distributed.broadcast_(lp.min_scale.data, owner)
        distributed.broadcast_(lp.max_scale.data, owner)
    return learnables


def _clip_max(opts: QuantizeOptions) -> float:
    return EXT_CLIP_MAX if opts.enable_alg_ext else CLIP_MAX


def _tunes_range(s: QuantScheme) -> bool:
    return s.data_type not in ("int_dq", "int_ggml")


def _start(t: Target, s: QuantScheme, w: Tensor, imatrix: Tensor | None, opts: QuantizeOptions) -> Learnables:
    """Learnables at the optimized-RTN range (the plain range with disable_opt_rtn). GGUF types
    keep theirs frozen: their scales come from the weighted least-squares search, and moving the
    range would re-quantize every sub-group scale of a super-block; only v is tuned."""
    if opts.disable_opt_rtn:
        lo = hi = torch.ones(scale_shape(tuple(w.shape), s), device=w.device)
    else:
        lo, hi = search_range(w, s, imatrix, opts.enable_alg_ext)
    return make_learnables(t, s, (lo, hi), w.device, clip_max=_clip_max(opts), tune_range=_tunes_range(s))


def _tune_with_retries(block: nn.Module, learnables: list[Learnables], x: Tensor, y: Tensor,
                       kwargs: dict[str, Any], cfg: TuneConfig, device: torch.device, seed: int):
    """Tune; on out-of-memory retry with half the micro-batch and twice the accumulation (the same
    effective batch) down to one sample, then with the cached activations moved to the CPU
    (as --low_gpu_mem_usage does), before failing."""
    start = snapshot(learnables, with_v=False)  # fresh learnables: v is 0
    while True:
        try:
            with torch.enable_grad():
                return tune_block(block, learnables, x, y, kwargs, cfg, device, block_seed=seed)
        except torch.OutOfMemoryError:
            if distributed.is_data_parallel():  # a retry on one rank alone would stall the others
                raise QuantizeError(f"out of memory while tuning data-parallel (batch_size={cfg.batch_size} over "
                                    f"{distributed.world_size()} ranks): lower --batch_size or --seqlen, or add "
                                    "--low_gpu_mem_usage") from None
            if cfg.batch_size > 1:
                cfg = replace(cfg, batch_size=cfg.batch_size // 2,
                              gradient_accumulate_steps=cfg.gradient_accumulate_steps * 2)
                what = f"batch_size={cfg.batch_size}, gradient_accumulate_steps={cfg.gradient_accumulate_steps}"
            elif x.device.type != "cpu":
                x, y, what = x.cpu(), y.cpu(), "the cached activations on the CPU (low_gpu_mem_usage)"
            else:
                raise QuantizeError("out of memory even with a micro-batch of 1 sample and activations on the "
                                    "CPU: use a shorter --seqlen or a larger device") from None
            log.warning("out of memory while tuning: retrying with %s", what)
            restore(learnables, start)
            if device.type == "cuda":
                torch.cuda.empty_cache()


def _check_finite_weights(targets: list[tuple[Target, QuantScheme]]) -> None:
    for t, _ in targets:
        lo, hi = torch.aminmax(t.weight2d())  # NaN propagates, Inf is an extreme: no mask tensor
        if not bool(torch.isfinite(lo) & torch.isfinite(hi)):
            raise QuantizeError(f"the weight of {t.name} holds NaN or Inf values; the checkpoint is damaged")


def _record(t: Target, s: QuantScheme, res, qmodel: QuantizedModel) -> None:
    """Store the quantized layer and write its dequantized weight into the model (fake quant)."""
    layer = QuantizedLayer.from_result(t.name, s, res, t.bias)
    qmodel.layers[t.name] = layer
    t.set_weight(res.dequant.detach())


def _apply_layers(model: nn.Module, layers: list[QuantizedLayer], qmodel: QuantizedModel) -> None:
    targets = {t.name: t for t in find_targets(model)}
    for layer in layers:
        targets[layer.name].set_weight(layer.dequantize())
        qmodel.layers[layer.name] = layer


def _forward_all(block: nn.Module, x: Tensor, kwargs: dict[str, Any], opts: QuantizeOptions, amp: bool,
                 inplace: bool = False) -> Tensor:
    """Block outputs for all samples, in batches, stored like the inputs; ``inplace`` writes them
    over ``x`` (one activation cache less on the device). Data-parallel ranks each compute a
    contiguous shard of the samples and share the outputs."""
    device = torch.device(opts.device)
    y = x if inplace else torch.empty_like(x)
    lo, hi = distributed.shard_range(x.shape[0])
    bs = distributed.local_batch_size(opts.batch_size)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        for i in range(lo, hi, bs):
            j = min(i + bs, hi)
            y[i:j] = call_block(block, x[i:j].to(device), kwargs).to(x.device, x.dtype)
    distributed.share_rows_(y)
    return y


def _fp_inplace(fp_in: Tensor, q_in: Tensor, opts: QuantizeOptions) -> bool:
    """The fp chain may overwrite its input unless tuning reads it (no quantized chain) or the
    quantized chain still shares it (block 0)."""
    return opts.enable_quanted_input and fp_in is not q_in


def _imatrix_hooks(targets: list[tuple[Target, QuantScheme]]) -> dict[str, Any]:
    """Accumulate mean x^2 per input channel of each target during the next forward."""
    acc: dict[str, Any] = {}
    handles = []
    for t, _ in targets:
        if t.kind == "experts" and t.attr == "down_proj":
            continue

        def hook(mod: nn.Module, args: tuple, name: str = t.name) -> None:
            x = args[0].detach().float()
            sq = x.reshape(-1, x.shape[-1]).pow(2).mean(0)
            acc[name] = sq if name not in acc else acc[name] + sq
        handles.append(t.module.register_forward_pre_hook(hook))
    acc["__handles__"] = handles
    return acc


def _quantize_lm_head(model: nn.Module, plan: dict[str, QuantScheme | None], opts: QuantizeOptions,
                      qmodel: QuantizedModel) -> None:
    head = lm_head_target(model)
    if head is None or plan.get(head.name) is None:
        return
    s = plan[head.name]
    _record(head, s, rtn(head.weight2d().to(opts.device), s), qmodel)


# ---- small helpers ---------------------------------------------------------------------------
class _Timer:
    """Seconds of each phase of a block (synchronised on CUDA so the numbers are the GPU's)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.start, self.seconds = device, time.perf_counter(), {}

    def lap(self, name: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.seconds[name] = round(now - self.start, 3)
        self.start = now


def _use_amp(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


EAGER_ATTENTION_MAX_BYTES = 2**30  # fp32 attention probabilities of one batch


@contextmanager
def _cpu_tuning_attention(model: nn.Module, opts: QuantizeOptions, samples: Tensor | None) -> Iterator[None]:
    """Tune with transformers' "eager" (matmul + softmax) attention on the CPU, then restore the
    model's own choice. Why: on the CPU, SDPA's flash kernel runs its backward about 4x slower
    than the matmul form (63 vs ~15 ms per Gemma-3-270M batch of 8 x 512), and attention's
    backward runs every tuning step. Also without tuning (optimized RTN), so that both see the
    same calibration activations. Only while one batch's attention probabilities stay small."""
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    heads = getattr(getattr(config, "get_text_config", lambda: config)(), "num_attention_heads", None)
    switch = (torch.device(opts.device).type == "cpu" and samples is not None
              and current == "sdpa" and heads is not None and hasattr(model, "set_attn_implementation")
              and 4 * opts.batch_size * heads * opts.seqlen ** 2 <= EAGER_ATTENTION_MAX_BYTES)
    if not switch:
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(current)


def _use_compile(opts: QuantizeOptions, device: torch.device) -> bool:
    """Compile the tuning step on CUDA, and on a CPU with a C++ compiler once the tuning work
    (iterations x tokens) repays the ~1 min the two-core CPU spends compiling."""
    if opts.enable_torch_compile is not None:
        return opts.enable_torch_compile
    if device.type == "cuda":
        return True
    big = opts.iters * opts.batch_size * opts.seqlen >= 200_000
    return device.type == "cpu" and big and shutil.which(os.environ.get("CXX", "c++")) is not None


def _fingerprint(model: nn.Module, plan: dict[str, QuantScheme | None], opts: QuantizeOptions,
                 samples: Tensor | None) -> dict[str, Any]:
    return {"model": type(model).__name__, "layers": {k: (v.to_dict() if v else None) for k, v in plan.items()},
            "options": opts.record(),
            "samples": None if samples is None else int(samples.sum().item() * 31 + samples.numel())}


def _reset_peak_memory(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _peak_memory_gb(device: str) -> float:
    if torch.device(device).type == "cuda":
        return round(torch.cuda.max_memory_allocated() / 2**30, 2)
    try:
        import resource
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    except ImportError:
        return float("nan")

"""`ar quantize`: validate everything, load, tune, export, summarise."""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from ar_schemes import ArError, QuantScheme, get_scheme, resolve_layer_schemes

from .models import check_model_arg, resolve_model
from .multi_device import check_devices, is_multi_process, launch

log = logging.getLogger("ar")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="quantize a model and save it", description=__doc__)
    g = p.add_argument_group("model and output")
    g.add_argument("--model", "--model_name", required=True, help="checkpoint dir, hub id or 'gemma-3-270m'")
    g.add_argument("--output_dir", default="./ar_output", help="where the checkpoint(s) go")
    g.add_argument("--format", default="auto_round", help="one or more of `ar list formats`, comma-separated")
    g.add_argument("--max_shard_size", default="5GB")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...; a list (0,1 or cuda:0,cuda:1) tunes "
                   "data-parallel, one process per GPU, --batch_size being the global batch")
    g.add_argument("--device_map", help="split each block over devices while tuning: auto, a list (0,1) or JSON "
                   '{"self_attn": 0, "mlp": 1}')
    g = p.add_argument_group("scheme")
    g.add_argument("--scheme", default="W4A16", help="a preset of `ar list schemes`")
    g.add_argument("--bits", type=int)
    g.add_argument("--group_size", type=int)
    g.add_argument("--asym", action="store_true", help="asymmetric (zero point) integers")
    g.add_argument("--layer_config", help="JSON or a .json file: {layer or regex: scheme or overrides}")
    g.add_argument("--ignore_layers", default="", help="comma-separated names or regexes kept 16-bit")
    g.add_argument("--quant_lm_head", action="store_true")
    g.add_argument("--avg_bits", type=float, help="AutoScheme: average bits per weight (scales and zero points "
                   "included) to meet by choosing a scheme per layer among --options")
    g.add_argument("--options", help="AutoScheme: schemes to choose from, comma-separated (W2A16G64,W4A16)")
    g.add_argument("--ignore_scale_zp_bits", action="store_true", help="AutoScheme: count weight bits only")
    g = p.add_argument_group("tuning")
    g.add_argument("--recipe", choices=["default", "best", "light", "opt-rtn", "rtn"])
    g.add_argument("--iters", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--minmax_lr", type=float)
    g.add_argument("--nsamples", type=int)
    g.add_argument("--seqlen", type=int)
    g.add_argument("--batch_size", type=int)
    g.add_argument("--gradient_accumulate_steps", type=int)
    g.add_argument("--dataset", default=None, help="dataset spec or a local .txt/.json/.jsonl path")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--disable_opt_rtn", action="store_true")
    g.add_argument("--not_use_best_mse", action="store_true")
    g.add_argument("--disable_minmax_tuning", action="store_true")
    g.add_argument("--disable_quanted_input", action="store_true")
    g.add_argument("--low_gpu_mem_usage", action="store_true")
    c = g.add_mutually_exclusive_group()
    c.add_argument("--enable_torch_compile", action="store_true",
                   help="compile the tuning step (default: on for CUDA, and on CPU for long runs)")
    c.add_argument("--disable_torch_compile", action="store_true", help="never compile; tune eagerly")
    g.add_argument("--enable_deterministic_algorithms", action="store_true")
    g.add_argument("--adam", action="store_true")
    g.add_argument("--enable_alg_ext", action="store_true",
                   help="searched sym-int/MX/NVFP4 start, clip range [0, 2], outlier-robust loss at <= 3 bits")
    g.add_argument("--disable_amp", action="store_true", help="tune in the model dtype, no bf16 autocast")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run in --output_dir")
    g = p.add_argument_group("evaluation")
    g.add_argument("--ppl_text", help="text scored for perplexity before and after quantizing: a file, or "
                   "'wikitext2_eval' (shipped in ar-eval)")
    g.add_argument("--ppl_windows", type=int, default=20)
    from .eval_cmd import add_eval_flags
    add_eval_flags(p)  # --tasks, --eval_bs, --limit, ... run right after quantizing


def build_plan(args: argparse.Namespace) -> dict[str, Any]:
    """Turn flags into validated scheme + options; raises ArError before anything is loaded."""
    from ar_core import QuantizeOptions, recipe_options
    from ar_export import check_formats, parse_formats
    overrides = {"bits": args.bits, "group_size": args.group_size, "sym": False if args.asym else None}
    auto = _auto_scheme(args)
    scheme = auto or get_scheme(args.scheme, **overrides)
    formats = parse_formats(args.format)
    probe = [get_scheme(o) for o in auto.options] if auto else [scheme]
    check_formats(formats, {f"model.layers.{i}.mlp.down_proj": s for i, s in enumerate(probe)})
    check_model_arg(args.model)
    opts = recipe_options(args.recipe) if args.recipe else {}
    flags = {k: getattr(args, k) for k in ("iters", "lr", "minmax_lr", "nsamples", "seqlen", "batch_size",
                                           "gradient_accumulate_steps") if getattr(args, k) is not None}
    opts.update(flags)
    layer_config = _layer_config(args.layer_config)
    resolve_layer_schemes([], probe[0], layer_config)  # every value parsed now, before loading
    opts.update(seed=args.seed, layer_config=layer_config, ignore_layers=args.ignore_layers,
                quant_lm_head=args.quant_lm_head, not_use_best_mse=args.not_use_best_mse,
                enable_minmax_tuning=not args.disable_minmax_tuning,
                enable_quanted_input=not args.disable_quanted_input, low_gpu_mem_usage=args.low_gpu_mem_usage,
                device=args.device, enable_torch_compile=True if args.enable_torch_compile else False if args.disable_torch_compile else None,
                enable_deterministic_algorithms=args.enable_deterministic_algorithms, adam=args.adam,
                enable_alg_ext=args.enable_alg_ext,
                amp=False if args.disable_amp else None, resume=args.resume,
                work_dir=str(Path(args.output_dir).resolve().with_name(Path(args.output_dir).name + ".ar-work")))
    if args.disable_opt_rtn:
        opts["disable_opt_rtn"] = True
    QuantizeOptions.build(**opts)  # validates every value now
    check_devices(args, opts, _check_device)  # --device (one or a data-parallel list) and --device_map
    _check_output(args)
    _check_disk_space(args, len(formats))
    return {"scheme": scheme, "formats": formats, "options": opts}


def _auto_scheme(args: argparse.Namespace):
    """AutoScheme from --avg_bits / --options, validated now (each option a scheme, avg_bits reachable)."""
    if args.avg_bits is None and not args.options:
        return None
    if args.avg_bits is None or not args.options:
        raise ArError("--avg_bits and --options go together (AutoScheme), e.g. --avg_bits 3.0 --options W2A16G64,W4A16")
    if args.bits is not None or args.group_size is not None or args.asym:
        raise ArError("--bits / --group_size / --asym shape one scheme; with --avg_bits name each candidate in "
                      "--options (e.g. W2A16G64,W4A16G64) or fix layers with --layer_config")
    from ar_core import AutoScheme
    return AutoScheme(avg_bits=args.avg_bits, options=args.options, ignore_scale_zp_bits=args.ignore_scale_zp_bits)


def _layer_config(value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    text = Path(value).read_text() if value.endswith(".json") and Path(value).is_file() else value
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise ArError(f"--layer_config is neither valid JSON nor a .json file: {e}") from e
    if not isinstance(cfg, dict):
        raise ArError("--layer_config must be a JSON object {layer or regex: scheme name or {field: value}}")
    return cfg


def _check_device(device: str) -> None:
    import torch
    kind = device.split(":")[0]
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "xpu": hasattr(torch, "xpu") and torch.xpu.is_available(), "mps": torch.backends.mps.is_available()}
    if kind not in available:
        raise ArError(f"--device {device!r} is not a device type; valid choices: cpu, cuda, cuda:N, xpu, mps")
    if not available[kind]:
        have = ", ".join(k for k, ok in available.items() if ok)
        raise ArError(f"--device {device!r} is not available on this machine; available: {have}")
    if kind == "cuda" and ":" in device and int(device.split(":")[1]) >= torch.cuda.device_count():
        raise ArError(f"--device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def _check_disk_space(args: argparse.Namespace, n_formats: int) -> None:
    """Refuse before tuning when the output cannot fit: each format needs at most the model's size."""
    import shutil
    model = Path(args.model)
    if not model.is_dir():
        return
    need = sum(f.stat().st_size for f in model.glob("*.safetensors")) * n_formats
    out = Path(args.output_dir).resolve()
    parent = out if out.exists() else out.parent
    while not parent.exists():
        parent = parent.parent
    free = shutil.disk_usage(parent).free
    if need > free:
        raise ArError(f"--output_dir {args.output_dir!r}: about {need / 2**30:.1f} GiB may be written "
                      f"({n_formats} format(s)) but only {free / 2**30:.1f} GiB are free there")


def _check_output(args: argparse.Namespace) -> None:
    out = Path(args.output_dir).resolve()
    if Path(args.model).is_dir() and out == Path(args.model).resolve():
        raise ArError(f"--output_dir {args.output_dir!r} is the input model directory; choose another directory")
    parent = out if out.exists() else out.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise ArError(f"--output_dir {args.output_dir!r} is not writable")


def run(args: argparse.Namespace) -> int:
    plan = build_plan(args)
    opts = plan["options"]
    from ar_calib import load_samples, validate_dataset_spec
    auto = plan["scheme"] if not isinstance(plan["scheme"], QuantScheme) else None
    tuning_data = opts.get("iters", 200) > 0 or not opts.get("disable_opt_rtn", False)
    needs_data = tuning_data or auto is not None
    dataset = args.dataset
    if needs_data and dataset is not None:
        validate_dataset_spec(dataset)
    start = time.time()
    model_path = resolve_model(args.model)
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_path)
    samples = None
    if needs_data:
        from ar_core import QuantizeOptions
        o = QuantizeOptions.build(**opts)
        n = max(o.nsamples if tuning_data else 0, auto.nsamples if auto else 0)
        samples = load_samples(dataset, tok, n, o.seqlen, seed=o.seed)
    if is_multi_process(args):  # data-parallel: one process per device, or this one as a torchrun rank
        return launch(args, plan, model_path, samples, start)
    model = _load_model(model_path)
    return _quantize_and_save(args, plan, model, tok, samples, start)


def _load_model(path: str):
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
    if model.dtype == torch.float32:
        log.info("model is float32; tuning uses bf16 autocast where the device supports it")
    return model.eval()


def _quantize_and_save(args, plan, model, tok, samples, start: float) -> int:
    import ar_core
    import ar_export
    from ar_core import QuantizeOptions
    o = QuantizeOptions.build(**plan["options"])
    if isinstance(plan["scheme"], QuantScheme):  # an AutoScheme's layers are known after its search
        layer_schemes, _ = ar_core.plan_layers(model, ar_core.find_blocks(model), plan["scheme"], o)
        ar_export.check_formats(plan["formats"], layer_schemes)
    ppl_before = _ppl(model, tok, args) if args.ppl_text else None
    qmodel = ar_core.quantize(model, tok, plan["scheme"], samples, **plan["options"])
    paths = ar_export.save(qmodel, model, tok, args.output_dir, plan["formats"], max_shard_size=args.max_shard_size)
    ppl_after = _ppl(model, tok, args) if args.ppl_text else None
    _summary(qmodel, paths, time.time() - start, ppl_before, ppl_after)
    if args.tasks:
        from ar_eval import evaluate_model, format_table

        from .eval_cmd import lm_eval_options
        report = evaluate_model(model, tok, name=Path(args.output_dir).name, tasks=args.tasks,
                                output_dir=args.output_dir, **lm_eval_options(args))
        print(format_table(report))
    import shutil
    if o.work_dir:
        shutil.rmtree(o.work_dir, ignore_errors=True)
    return 0


def _ppl(model, tok, args) -> float:
    from ar_eval import perplexity
    return perplexity(model, tok, args.ppl_text, seqlen=512, windows=args.ppl_windows).ppl


def _summary(qmodel, paths, seconds: float, before: float | None, after: float | None) -> None:
    st = qmodel.stats
    losses = [b["best_loss"] for b in st.get("blocks", []) if "best_loss" in b]
    print(f"quantized {st['layers_quantized']} layers ({st['layers_skipped']} kept 16-bit) in {seconds:.1f} s, "
          f"peak memory {st['peak_memory_gb']} GB" + (f", mean block loss {sum(losses) / len(losses):.4g}"
                                                      if losses else ""))
    if "auto_scheme" in st:
        a = st["auto_scheme"]
        print(f"AutoScheme: {a['avg_bits']:.4f} bits per weight on average (target {a['target_bits']}, "
              f"{a['total_params']} weights)")
    if before is not None:
        print(f"perplexity before: {before:.4f}")
    if after is not None:
        print(f"perplexity after:  {after:.4f}")
    for fmt, path in paths.items():
        print(f"saved {fmt}: {path}")

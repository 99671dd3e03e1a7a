"""`ar quantize` on several devices.

``--device 0,1`` (or ``cuda:0,cuda:1``; ``cpu,cpu`` for tests) tunes data-parallel: one process
per device, each with the whole model and a share of every batch (``--batch_size`` is the global
batch; see ``ar_core.distributed``). Under ``torchrun`` each launched process is one rank and
``--device cuda`` means its local GPU. ``--device_map auto|0,1|JSON`` instead splits each block
over devices in one process. Only rank 0 writes the checkpoint, evaluates and prints.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from ar_schemes import ArError

log = logging.getLogger("ar")


def check_devices(args: argparse.Namespace, opts: dict[str, Any], check_one: Callable[[str], None]) -> None:
    """Validate --device / --device_map before anything loads; put the tuning device and the
    device map into ``opts`` (a device list leaves its first device there: each rank sets its own)."""
    import torch

    from ar_core import parse_device_map, parse_devices
    visible = torch.cuda.device_count()
    devices = parse_devices(args.device, visible, "--device") if "," in args.device else [args.device]
    if len(devices) == 1:
        check_one(devices[0])
    device_map = _device_map_arg(args.device_map)
    if device_map is not None:
        parse_device_map(device_map, visible)  # raises naming the bad entry and the valid choices
        if len(devices) > 1:
            raise ArError(f"--device {args.device!r} (data-parallel, one process per device) and --device_map "
                          "(one block split over devices) cannot be combined; choose one")
    if len(devices) > 1:
        from ar_core import QuantizeOptions
        batch = QuantizeOptions.build(**opts).batch_size
        if batch % len(devices):
            raise ArError(f"--batch_size {batch} is the global batch of the {len(devices)} devices of --device "
                          f"{args.device!r} and must be a multiple of {len(devices)}")
    opts.update(device=devices[0], device_map=device_map)


def _device_map_arg(value: str | None) -> Any:
    if not value:
        return None
    text = value.strip()
    if text.endswith(".json") and os.path.isfile(text):
        text = open(text).read()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ArError(f"--device_map {value!r} is not valid JSON ({e}); give auto, a list like 0,1 or "
                          '{"self_attn": 0, "mlp": 1}') from e
    return text


def data_parallel_devices(args: argparse.Namespace) -> list[str]:
    """The devices of a data-parallel run from --device (one entry: not data-parallel)."""
    from ar_core import parse_devices
    return parse_devices(args.device, what="--device") if "," in args.device else [args.device]


def under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def is_multi_process(args: argparse.Namespace) -> bool:
    return under_torchrun() or len(data_parallel_devices(args)) > 1


def launch(args: argparse.Namespace, plan: dict[str, Any], model_path: str, samples: Any, start: float) -> int:
    """Run the job data-parallel: this process as one torchrun rank, or one spawned process per
    device of --device. Raises ArError when a rank fails."""
    from ar_core import init_distributed, spawn
    if under_torchrun():
        if args.device not in ("cuda", "cpu"):
            raise ArError(f"--device {args.device!r} under torchrun: pass --device cuda (each rank takes the GPU "
                          "of its LOCAL_RANK) or --device cpu (gloo)")
        info = init_distributed(device="cpu" if args.device == "cpu" else None)
        try:
            return run_rank(args, plan, model_path, samples, start, info.device, info.rank)
        finally:
            import torch.distributed as dist
            dist.destroy_process_group()
    devices = data_parallel_devices(args)
    import torch.multiprocessing as mp
    log.info("data-parallel tuning on %s: one process per device", ", ".join(devices))
    try:
        spawn(_worker, devices, args, plan, model_path, samples, start)
    except mp.ProcessExitedException as e:
        raise ArError(f"data-parallel rank {e.error_index} ({devices[e.error_index]}) stopped with exit code "
                      f"{e.exit_code}; its message is above") from None
    except mp.ProcessRaisedException as e:
        raise ArError(f"data-parallel rank {e.error_index} ({devices[e.error_index]}) failed:\n{e}") from None
    return 0


def _worker(rank: int, device: str, args: argparse.Namespace, plan: dict[str, Any], model_path: str,
            samples: Any, start: float) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s ar %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        code = run_rank(args, plan, model_path, samples, start, device, rank)
    except ArError as e:
        print(f"ar: error (rank {rank}, {device}): {e}", file=sys.stderr)
        code = 2
    if code:
        sys.exit(code)


def run_rank(args: argparse.Namespace, plan: dict[str, Any], model_path: str, samples: Any, start: float,
             device: str, rank: int) -> int:
    """One rank's share: load, tune together; rank 0 also saves, evaluates and prints."""
    from transformers import AutoTokenizer

    import ar_core

    from .quantize_cmd import _load_model, _quantize_and_save
    plan = {**plan, "options": {**plan["options"], "device": device}}
    tok = AutoTokenizer.from_pretrained(model_path)
    model = _load_model(model_path)
    if rank == 0:
        return _quantize_and_save(args, plan, model, tok, samples, start)
    ar_core.quantize(model, tok, plan["scheme"], samples, **plan["options"])
    return 0

"""Data-parallel tuning: one process per GPU (NCCL), or several CPU processes (gloo) in tests.

What is shared and what is split
  Every rank holds the whole model and every calibration sample (broadcast from rank 0). The
  block forwards that are not tuning (fp targets, quantized chain) are computed on contiguous
  sample shards and their outputs shared (:func:`share_rows_`); the importance (mean x^2 per
  input channel) is summed over ranks. The tuning loop is split two ways
  (``ar_core.signround.StepWeights``):
  - samples: each step draws the same global batch of ``batch_size`` samples on every rank and
    rank r computes its contiguous 1/W slice (``batch_size`` must divide by W);
  - weights: each quantized weight of the block has an owner rank (:func:`owners`, balanced by
    size). The owner alone runs its quantize-dequantize forward and backward, sign step, clamp
    and best-iteration copies, and broadcasts the 16-bit dequantized weight each step; the
    16-bit weight gradients are averaged onto the owner (``dist.reduce``). At the end the
    owners broadcast the tuned learnables.
  The step loss is averaged over ranks, so every rank picks the same best iteration. The
  all-samples losses that judge tuned against starting weights are computed on contiguous
  sample shards and summed.

Equality with one process
  W ranks with ``batch_size=B`` draw the same samples each step as one process with
  ``batch_size=B/W, gradient_accumulate_steps=W`` and compute the same micro-batches. One
  process accumulates the micro-batch weight gradients (each scaled by 1/W) in the leaf;
  W=2 ranks add the two unscaled halves and halve the sum, which is the same float. So the
  result is bit for bit the same when ``nsamples`` is a multiple of B
  (tests/core/test_distributed.py). For W>2 the reduction may add in another order (last-bit
  differences). One process with ``batch_size=B`` sees the same samples too, but its batch-B
  matmuls round differently from two batch-B/2 ones.

Launch with ``torchrun`` (call :func:`init_distributed` with no arguments, then
``ar_core.quantize``), with :func:`spawn`, or with ``ar quantize --device 0,1``.
"""
from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .errors import QuantizeError
from .options import QuantizeOptions

log = logging.getLogger("ar")


@dataclass(frozen=True)
class WorldInfo:
    """This process's place in the data-parallel group."""

    rank: int = 0
    world_size: int = 1
    device: str = "cpu"


# ---- who am I ---------------------------------------------------------------------------------
def is_data_parallel() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_data_parallel() else 1


def rank() -> int:
    return dist.get_rank() if is_data_parallel() else 0


def is_main() -> bool:
    """Only the main rank (0) writes files and reports progress."""
    return rank() == 0


def init_distributed(rank: int | None = None, world_size: int | None = None, device: str | None = None,
                     backend: str | None = None, timeout_minutes: float | None = None) -> WorldInfo:
    """Join (or create) the process group; arguments left out come from torchrun's environment.

    ``device``: this rank's device (default ``cuda:$LOCAL_RANK`` when CUDA is present, else cpu);
    ``backend``: nccl for CUDA devices, gloo otherwise. NVLink multicast stays off
    (``NCCL_NVLS_ENABLE=0`` unless already set). Ranks other than 0 log errors only.

    >>> info = init_distributed()  # under `torchrun --nproc_per_node 2 script.py`  # doctest: +SKIP
    """
    env = os.environ
    rank = int(env.get("RANK", 0)) if rank is None else rank
    world_size = int(env.get("WORLD_SIZE", 1)) if world_size is None else world_size
    if device is None:
        device = f"cuda:{env.get('LOCAL_RANK', rank)}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    env.setdefault("NCCL_NVLS_ENABLE", "0")
    env.setdefault("MASTER_ADDR", "127.0.0.1")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        minutes = timeout_minutes or float(env.get("AR_DIST_TIMEOUT_MINUTES", 60))
        dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timedelta(minutes=minutes))
    _quiet_other_ranks()
    return WorldInfo(rank, world_size, str(dev))


class _ErrorsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def _quiet_other_ranks() -> None:
    logger = logging.getLogger("ar")
    if rank() != 0 and not any(isinstance(f, _ErrorsOnly) for f in logger.filters):
        logger.addFilter(_ErrorsOnly())


# ---- devices ----------------------------------------------------------------------------------
def parse_device(value: str | int, visible_gpus: int | None = None, what: str = "device") -> str:
    """``3`` / ``"3"`` / ``"cuda:3"`` -> ``"cuda:3"``; ``"cuda"`` -> ``"cuda:0"``; ``"cpu"`` stays.

    Raises :class:`QuantizeError` naming the value and the valid choices."""
    visible = torch.cuda.device_count() if visible_gpus is None else visible_gpus
    text = str(value).strip()
    if text == "cpu":
        return "cpu"
    index = text.split(":", 1)[1] if text.startswith("cuda:") else ("0" if text == "cuda" else text)
    valid = f"cpu, or a GPU id 0..{visible - 1} (N or cuda:N)" if visible else "cpu (this machine has no CUDA GPU)"
    if not index.isdigit():
        raise QuantizeError(f"{what} {value!r} is not a device; valid choices: {valid}")
    if int(index) >= visible:
        raise QuantizeError(f"{what} {value!r}: this machine has {visible} CUDA GPU(s); valid choices: {valid}")
    return f"cuda:{int(index)}"


def parse_devices(value: str | Sequence[str | int], visible_gpus: int | None = None,
                  what: str = "device") -> list[str]:
    """A comma list (``"0,1"``, ``"cuda:0,cuda:1"``, ``"cpu,cpu"``) as device strings.

    GPUs may not repeat (one process or one share per GPU) and CPU may not mix with GPUs."""
    items = [x for x in value.split(",") if x.strip()] if isinstance(value, str) else list(value)
    if not items:
        raise QuantizeError(f"{what} {value!r} names no device; give e.g. 0,1 or cuda:0,cuda:1")
    devices = [parse_device(x, visible_gpus, f"{what} {value!r}, entry") for x in items]
    gpus = [d for d in devices if d != "cpu"]
    if len(set(gpus)) != len(gpus):
        raise QuantizeError(f"{what} {value!r} names a GPU twice; list each GPU once")
    if gpus and len(gpus) != len(devices):
        raise QuantizeError(f"{what} {value!r} mixes cpu with GPUs; use GPUs only (or cpu only, for tests)")
    return devices


# ---- the split of the work --------------------------------------------------------------------
def local_batch_size(global_batch: int) -> int:
    """Samples one rank computes per micro-step when the group shares ``global_batch``."""
    w = world_size()
    if global_batch % w:
        raise QuantizeError(f"batch_size={global_batch} is the global batch of {w} data-parallel ranks and "
                            f"must be a multiple of {w}; use batch_size={max(w, global_batch // w * w)}")
    return global_batch // w


def shard_batches(batches: Iterator[Tensor]) -> Iterator[Tensor]:
    """This rank's contiguous slice of every global batch of sample indices (all of it alone)."""
    w, r = world_size(), rank()
    for idx in batches:
        b = local_batch_size(len(idx))
        yield idx[r * b:(r + 1) * b] if w > 1 else idx


def shard_range(n: int, of_rank: int | None = None) -> tuple[int, int]:
    """[lo, hi) of this (or ``of_rank``'s) contiguous share of ``n`` samples (sizes differ by at
    most one)."""
    w, r = world_size(), rank() if of_rank is None else of_rank
    return r * n // w, (r + 1) * n // w


# ---- communication ----------------------------------------------------------------------------
def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@torch.no_grad()
def all_reduce_mean_(t: Tensor) -> Tensor:
    """The mean over ranks of ``t``, in place (a sum, then / W: exact for W a power of two);
    ``t`` itself in a single process."""
    if is_data_parallel():
        dist.all_reduce(t)
        t.div_(world_size())
    return t


def owners(sizes: Sequence[int]) -> list[int]:
    """Owner rank of each of ``sizes`` weights: largest first onto the least-loaded rank (all 0 alone)."""
    load, out = [0] * world_size(), [0] * len(sizes)
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        out[i] = min(range(len(load)), key=load.__getitem__)
        load[out[i]] += sizes[i]
    return out


@torch.no_grad()
def broadcast_(t: Tensor, src: int) -> None:
    """Rank ``src``'s ``t`` into ``t`` on every rank (in place); a no-op in a single process."""
    if is_data_parallel():
        dist.broadcast(t, src=src)


@torch.no_grad()
def reduce_mean_(t: Tensor, dst: int) -> None:
    """The mean over ranks of ``t`` into rank ``dst``'s ``t`` (a sum, then / W: exact for W a power
    of two); other ranks' ``t`` is left undefined. A no-op in a single process."""
    if is_data_parallel():
        dist.reduce(t, dst=dst)
        if rank() == dst:
            t.div_(world_size())


@torch.no_grad()
def share_rows_(y: Tensor) -> None:
    """Every rank's :func:`shard_range` rows of ``y`` onto all ranks (in place); a no-op alone."""
    if not is_data_parallel():
        return
    dev = _comm_device()
    for r in range(world_size()):
        lo, hi = shard_range(y.shape[0], r)
        part = y[lo:hi]
        buf = part if part.device == dev and part.is_contiguous() else part.to(dev).contiguous()
        dist.broadcast(buf, src=r)
        if buf is not part:
            part.copy_(buf)


@torch.no_grad()
def all_reduce_sum_(t: Tensor | None) -> Tensor | None:
    """The sum over ranks of ``t`` into ``t`` (None passes through); a no-op in a single process."""
    if t is not None and is_data_parallel():
        dist.all_reduce(t)
    return t


def all_reduce_sum(value: float) -> float:
    """Sum of a float over the ranks (fp64); the value itself in a single process."""
    if not is_data_parallel():
        return value
    t = torch.tensor(value, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return float(t)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s (picklable) object on every rank; ``obj`` itself in a single process."""
    if not is_data_parallel():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_comm_device() if dist.get_backend() == "nccl" else None)
    return box[0]


def main_then_broadcast(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on rank 0 only (e.g. preparing a work directory) and give its result to all."""
    return broadcast_object(fn() if is_main() else None)


def check_same(value: Any, what: str) -> None:
    """Fail on every rank, naming ``what``, when the ranks hold different ``value``s."""
    if not is_data_parallel():
        return
    values: list[Any] = [None] * world_size()
    dist.all_gather_object(values, value)
    if any(v != values[0] for v in values):
        raise QuantizeError(f"data-parallel ranks hold different {what} ({values}); every rank must load the "
                            "same model with the same options")


# ---- set-up of one quantize() call ------------------------------------------------------------
def prepare(opts: QuantizeOptions, samples: Tensor | None, model: nn.Module) -> tuple[QuantizeOptions, Tensor | None]:
    """Options and samples of this process: ``device_map`` parsed (:mod:`ar_core.placement`);
    data-parallel: this rank's device, rank 0's samples, and a check that every rank runs the
    same job. A single process without ``device_map`` gets everything back unchanged."""
    if opts.device_map is not None:
        from .placement import resolve_device_map
        opts = resolve_device_map(opts)
    if not is_data_parallel():
        return opts, samples
    if opts.device_map is not None:
        raise QuantizeError("device_map (one block split over devices) and data-parallel tuning cannot be "
                            "combined yet; use one of them")
    opts = replace(opts, device=_rank_device(opts.device))
    samples = broadcast_object(samples.cpu() if samples is not None else None)
    if samples is not None:
        local_batch_size(min(opts.batch_size, samples.shape[0]))  # raises when it does not divide
    check_same(_fingerprint(opts, model), "models or options")
    _quiet_other_ranks()
    return opts, samples


def _rank_device(device: str) -> str:
    """torchrun passes one device for all ranks: a bare ``cuda`` means this rank's local GPU."""
    if device == "cuda":
        return f"cuda:{os.environ.get('LOCAL_RANK', rank())}"
    return device


@torch.no_grad()
def _fingerprint(opts: QuantizeOptions, model: nn.Module) -> tuple[Any, ...]:
    first = next(model.parameters()).detach().reshape(-1)[:1 << 20]  # a cheap look at the weights
    return (repr(sorted(opts.record().items())), repr(sorted(opts.layer_config.items(), key=str)),
            type(model).__name__, sum(p.numel() for p in model.parameters()), float(first.float().abs().sum()))


# ---- launching --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(fn: Callable[..., Any], devices: Sequence[str], *args: Any) -> None:
    """Run ``fn(rank, device, *args)`` in one fresh process per device, inside one process group.

    ``fn`` must be importable (module level). A failing rank stops the others and raises here.

    >>> spawn(worker, ["cuda:0", "cuda:1"], model_path)  # doctest: +SKIP
    """
    import torch.multiprocessing as mp
    port = free_port()
    mp.spawn(_entry, args=(fn, list(devices), port, args), nprocs=len(devices), join=True)


def _entry(rank: int, fn: Callable[..., Any], devices: list[str], port: int, args: tuple[Any, ...]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(len(devices)), LOCAL_RANK=str(rank))
    init_distributed(rank, len(devices), devices[rank])
    try:
        fn(rank, devices[rank], *args)
    finally:
        dist.destroy_process_group()

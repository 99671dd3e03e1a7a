"""Splitting one decoder block over several devices while it is tuned (``device_map``).

Values of the ``device_map`` option:
  ``"auto"``                       every visible GPU (the CPU when there is none)
  ``"0,1"``, ``"cuda:0,cuda:2"``, ``["cpu", "cpu"]``  those devices
  ``{"self_attn": 0, "mlp": "cuda:1"}``   explicit: a module name inside the block (or a full
                                   name) -> device; the longest matching name prefix wins and
                                   what no key matches stays on the tuning ``device``.
A list is balanced by memory: the weights to tune (with their fp32 copy, offsets, gradients and
saved states, ``TUNE_BYTES_PER_WEIGHT`` each) and their activations fill the devices in module
order, the first device also holding the cached block inputs and outputs, so that the largest
share of any device's free memory is as small as possible (:func:`plan_device_map`).

Each placed module gets a forward pre-hook that moves its inputs to its device and a forward
hook that moves its output back to the tuning device; a module whose targets all share one
device moves whole (``mlp`` rather than gate, up and down one by one). Moving tensors does not
change values, so a split block tunes to the same result as an unsplit one on the same kind of
device. After the block, the hooks go and the block returns to the tuning device.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from .blocks import Target, find_targets
from .capture import map_tensors
from .distributed import parse_device, parse_devices
from .errors import QuantizeError
from .options import QuantizeOptions

log = logging.getLogger("ar")
TUNE_BYTES_PER_WEIGHT = 40  # fp32 copy, v, its gradient, qdq intermediates, best/start snapshots
CPU_CAPACITY = 1 << 40  # CPU "devices" (tests) count as equal and large


@dataclass(frozen=True)
class DeviceMap:
    """A parsed ``device_map``: a pool of devices to balance over, or explicit assignments."""

    devices: tuple[str, ...] = ()
    explicit: tuple[tuple[str, str], ...] = ()  # (module name or prefix, device)

    @property
    def is_explicit(self) -> bool:
        return bool(self.explicit)

    def all_devices(self) -> list[str]:
        return list(self.devices) or list(dict.fromkeys(d for _, d in self.explicit))


def parse_device_map(spec: Any, visible_gpus: int | None = None) -> DeviceMap | None:
    """Validate a ``device_map`` value (see the module doc) without touching the model.

    >>> parse_device_map("0,1", visible_gpus=2).devices
    ('cuda:0', 'cuda:1')
    """
    if spec is None or isinstance(spec, DeviceMap):
        return spec
    visible = torch.cuda.device_count() if visible_gpus is None else visible_gpus
    if isinstance(spec, str) and spec.strip().startswith("{"):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as e:
            raise QuantizeError(f"device_map {spec!r} is not valid JSON ({e}); give auto, a list like 0,1 "
                                "or a JSON object {module: device}") from e
    if isinstance(spec, Mapping):
        if not spec:
            raise QuantizeError("device_map {} assigns nothing; give {module name: device}, auto or 0,1")
        return DeviceMap(explicit=tuple((str(k), parse_device(v, visible, f"device_map[{k!r}]"))
                                        for k, v in spec.items()))
    if spec == "auto":
        return DeviceMap(devices=tuple(f"cuda:{i}" for i in range(visible)) or ("cpu",))
    if isinstance(spec, (str, int, list, tuple)):
        value = str(spec) if isinstance(spec, int) else spec
        return DeviceMap(devices=tuple(parse_devices(value, visible, "device_map")))
    raise QuantizeError(f"device_map {spec!r} is not understood; valid: 'auto', a list like '0,1' or "
                        "'cuda:0,cuda:1', or a dict {module name: device}")


def main_device(device_map: DeviceMap, device: str) -> str:
    """The tuning device of a run with ``device_map``: ``device``, or the map's first device when
    ``device`` is the default cpu and the map names GPUs."""
    devices = device_map.all_devices()
    if str(device) == "cpu" and devices and devices[0] != "cpu":
        return devices[0]
    dev = torch.device(device)
    return f"cuda:{dev.index or 0}" if dev.type == "cuda" else str(dev)


def resolve_device_map(opts: QuantizeOptions) -> QuantizeOptions:
    """Options with ``device_map`` parsed and ``device`` set to the run's tuning device."""
    device_map = parse_device_map(opts.device_map)
    if device_map is None:
        return opts
    return replace(opts, device_map=device_map, device=main_device(device_map, opts.device))


def placer_for(opts: QuantizeOptions, cached: Tensor | None) -> BlockPlacer | None:
    """The placer of a run with a (resolved) ``device_map``, else None. ``cached``: block-0 inputs;
    when they live on the tuning device, its plan reserves room for two more such tensors
    (the block's fp and quantized outputs)."""
    device_map = parse_device_map(opts.device_map)
    if device_map is None:
        return None
    main = torch.device(opts.device)
    fixed = 2 * cached.numel() * cached.element_size() if cached is not None and cached.device == main else 0
    return BlockPlacer(device_map, str(main), fixed, opts.batch_size * opts.seqlen)


# ---- the planner (pure) ------------------------------------------------------------------------
def plan_device_map(sizes: Sequence[int], capacity: Sequence[int], fixed: Sequence[int] | None = None
                    ) -> tuple[list[int], float]:
    """Device slot of each unit, units kept in order, slots used in order.

    ``sizes``: bytes of each unit (in module order); ``capacity``: bytes free on each slot;
    ``fixed``: bytes each slot holds anyway (the tuning device's cached activations). Returns the
    slots and the largest ``(fixed + assigned) / capacity`` over the slots, which the plan
    minimises (above 1.0 the block does not fit).

    >>> plan_device_map([4, 4, 4, 4], [10, 10])
    ([0, 0, 1, 1], 0.8)
    """
    fixed = list(fixed) if fixed is not None else [0] * len(capacity)
    if len(fixed) != len(capacity) or not capacity or min(capacity) <= 0:
        raise QuantizeError(f"plan_device_map needs one positive capacity per device, got {list(capacity)} "
                            f"with fixed loads {fixed}")
    hi = max((fixed[0] + sum(sizes)) / capacity[0], *(f / c for f, c in zip(fixed, capacity)))
    lo = 0.0
    for _ in range(60):  # bisection on the largest load ratio; the greedy fill decides feasibility
        mid = (lo + hi) / 2
        if _fill(sizes, capacity, fixed, mid) is None:
            lo = mid
        else:
            hi = mid
    slots = _fill(sizes, capacity, fixed, hi)
    assert slots is not None  # hi is always feasible
    return slots, _ratio(sizes, slots, capacity, fixed)


def _fill(sizes: Sequence[int], capacity: Sequence[int], fixed: Sequence[int], ratio: float) -> list[int] | None:
    """Greedy in order: each slot takes units while its load stays within ``ratio`` of its capacity."""
    slots, slot, load = [], 0, fixed[0]
    for s in sizes:
        while load + s > ratio * capacity[slot] * (1 + 1e-12):
            slot += 1
            if slot == len(capacity):
                return None
            load = fixed[slot]
        slots.append(slot)
        load += s
    if any(f > ratio * c * (1 + 1e-12) for f, c in zip(fixed, capacity)):
        return None
    return slots


def _ratio(sizes: Sequence[int], slots: Sequence[int], capacity: Sequence[int], fixed: Sequence[int]) -> float:
    load = list(fixed)
    for s, d in zip(sizes, slots):
        load[d] += s
    return round(max(x / c for x, c in zip(load, capacity)), 6)


# ---- placing one block --------------------------------------------------------------------------
class BlockPlacer:
    """Places each block's modules per a :class:`DeviceMap` and puts them back afterwards.

    ``main``: the tuning device; ``fixed_bytes``: what the tuning device holds besides the block
    (cached activations); ``micro_tokens``: tokens of one micro-batch (activation estimate)."""

    def __init__(self, device_map: DeviceMap, main: str, fixed_bytes: int = 0, micro_tokens: int = 0) -> None:
        self.map, self.main = device_map, torch.device(main)
        self.fixed_bytes, self.micro_tokens = fixed_bytes, micro_tokens
        self.handles: list[Any] = []
        self.plans: list[dict[str, str]] = []  # module name -> device, per placed block (for logs and tests)

    def place(self, block: nn.Module, block_name: str) -> dict[str, str]:
        """Move ``block``'s modules to their devices and hook them; returns {module name: device}
        (empty, and nothing hooked, when the map is just the tuning device)."""
        if not self.map.is_explicit and list(self.map.devices) == [str(self.main)]:
            return {}
        targets = find_targets(block, block_name)
        per_module = self._assign(block, block_name, targets)
        plan = {}
        for name, module, dev in _coarsen(block, block_name, per_module):
            module.to(dev)
            self.handles.append(module.register_forward_pre_hook(_inputs_to(dev), with_kwargs=True))
            self.handles.append(module.register_forward_hook(_output_to(self.main)))
            plan[name] = dev
        self.plans.append(plan)
        (log.info if len(self.plans) == 1 else log.debug)("%s split over devices: %s", block_name, plan)
        return plan

    def release(self, block: nn.Module) -> None:
        """Remove the hooks and bring the whole block back to the tuning device."""
        for h in self.handles:
            h.remove()
        self.handles.clear()
        block.to(self.main)

    def _assign(self, block: nn.Module, block_name: str, targets: list[Target]) -> dict[int, str]:
        modules = list(dict.fromkeys(t.module for t in targets))
        if self.map.is_explicit:
            return _explicit(block, block_name, modules, self.map.explicit, str(self.main))
        pool = _pool(self.map.devices, str(self.main))
        if len(pool) == 1:
            return {id(m): pool[0] for m in modules}
        sizes = [self._unit_bytes(m, targets) for m in modules]
        capacity = [_free_bytes(d) for d in pool]
        capacity[0] += sum(p.numel() * p.element_size() for p in block.parameters() if p.device == self.main)
        fixed = [self.fixed_bytes if pool[0] == str(self.main) else 0] + [0] * (len(pool) - 1)
        slots, ratio = plan_device_map(sizes, capacity, fixed)
        if ratio > 1.0:
            log.warning("%s may not fit on %s: the plan fills %.0f%% of the fullest device's free memory",
                        block_name, ", ".join(pool), 100 * ratio)
        return {id(m): pool[s] for m, s in zip(modules, slots)}

    def _unit_bytes(self, module: nn.Module, targets: list[Target]) -> int:
        total = 0
        for t in targets:
            if t.module is module:
                rows, cols = t.shape
                total += rows * cols * TUNE_BYTES_PER_WEIGHT + self.micro_tokens * (rows + cols) * 4 * 2
        return total


def _pool(devices: Sequence[str], main: str) -> list[str]:
    """The balancing pool with the tuning device first (it holds the cached activations)."""
    devs = list(devices)
    if main in devs and main != "cpu":
        devs.remove(main)
        devs.insert(0, main)
    return devs


def _explicit(block: nn.Module, block_name: str, modules: list[nn.Module], entries: Sequence[tuple[str, str]],
              main: str) -> dict[int, str]:
    names = {id(m): n for n, m in block.named_modules()}
    used: set[str] = set()
    out = {}
    for m in modules:
        rel = names[id(m)]
        full = f"{block_name}.{rel}" if rel else block_name
        hits = [(len(k), k, d) for k, d in entries if any(x == k or x.startswith(k + ".") for x in (rel, full))]
        if hits:
            _, key, dev = max(hits)
            used.add(key)
            out[id(m)] = dev
        else:
            out[id(m)] = main
    unused = [k for k, _ in entries if k not in used]
    if unused:
        raise QuantizeError(f"device_map key(s) {unused} match no quantized module of {block_name}; its modules: "
                            f"{sorted(names[id(m)] for m in modules)}")
    return out


def _coarsen(block: nn.Module, block_name: str, assign: Mapping[int, str]) -> list[tuple[str, nn.Module, str]]:
    """The largest sub-modules (below the block) whose quantized modules all share one device."""
    def visit(prefix: str, mod: nn.Module) -> list[tuple[str, nn.Module, str]]:
        devs = {assign[id(m)] for m in mod.modules() if id(m) in assign}
        if not devs:
            return []
        if len(devs) == 1 and mod is not block:
            return [(prefix, mod, devs.pop())]
        return [x for n, c in mod.named_children() for x in visit(f"{prefix}.{n}", c)]
    return visit(block_name, block)


def _move(x: Any, device: torch.device | str) -> Any:
    return map_tensors(x, lambda t: t.to(device))  # no detach: gradients flow through the hooks


def _inputs_to(device: str):
    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return _move(args, device), _move(kwargs, device)
    return hook


def _output_to(device: torch.device):
    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        return _move(output, device)
    return hook


def _free_bytes(device: str) -> int:
    dev = torch.device(device)
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    return CPU_CAPACITY


def spans_devices(block: nn.Module) -> bool:
    """True when the block's parameters live on more than one device (torch.compile stays off)."""
    return len({p.device for p in block.parameters()}) > 1

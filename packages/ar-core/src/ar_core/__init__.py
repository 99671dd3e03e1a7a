"""ar-core: SignRound tuning, RTN and optimized RTN, block by block."""
from .__about__ import __version__

# the entry point
from .quantize import quantize, plan_layers, unsupported_shape
from .options import QuantizeOptions
from .recipes import RECIPES, recipe_options

# mixed precision: a scheme per layer under an average-bits budget
from .autoscheme import AutoScheme, AutoSchemeReport, choose_schemes, gradient_stats
from .budget import layer_bits, nominal_bits, solve_budget

# several devices: data-parallel ranks (torchrun or spawn) and one block split over devices
from .distributed import WorldInfo, init_distributed, parse_devices, spawn
from .placement import DeviceMap, parse_device_map, plan_device_map

# building blocks, for tools that drive the loop themselves
from .blocks import Target, find_blocks, find_targets
from .rtn import optimized_rtn, rtn, search_clip, search_range
from .signround import TuneConfig, tune_block

# errors
from .errors import QuantizeError

__all__ = [
    "__version__",
    "quantize", "plan_layers", "unsupported_shape", "QuantizeOptions", "RECIPES", "recipe_options",
    "AutoScheme", "AutoSchemeReport", "choose_schemes", "gradient_stats", "layer_bits", "nominal_bits", "solve_budget",
    "WorldInfo", "init_distributed", "parse_devices", "spawn", "DeviceMap", "parse_device_map", "plan_device_map",
    "Target", "find_blocks", "find_targets", "optimized_rtn", "rtn", "search_clip", "search_range", "TuneConfig", "tune_block",
    "QuantizeError",
]

"""Named recipes: iteration counts and sample budgets practitioners pick by name."""
from __future__ import annotations

from typing import Any

RECIPES: dict[str, dict[str, Any]] = {
    "default": {"iters": 200, "nsamples": 128},
    "best": {"iters": 1000, "nsamples": 512},
    "light": {"iters": 50, "lr": 5e-3},
    "opt-rtn": {"iters": 0},
    "rtn": {"iters": 0, "disable_opt_rtn": True},
}


def recipe_options(name: str) -> dict[str, Any]:
    from .errors import QuantizeError
    if name not in RECIPES:
        raise QuantizeError(f"unknown recipe {name!r}; valid choices: {', '.join(RECIPES)}")
    return dict(RECIPES[name])

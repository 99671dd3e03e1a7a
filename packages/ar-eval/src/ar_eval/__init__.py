"""ar-eval: perplexity and lm-evaluation-harness for original, quantized and in-memory models."""
from .__about__ import __version__

# errors
from .errors import EvalError, MissingDependencyError

# lm-evaluation-harness
from .harness import BACKENDS, TASKS_DIR, evaluate, is_oom, parse_tasks, task_manager

# models
from .loading import load_model, parse_devices, quantization_config

# perplexity
from .perplexity import TEXT_DATASETS, PerplexityResult, load_text, perplexity

# reports
from .results import (
    Comparison,
    compare_results,
    format_comparison,
    format_table,
    load_report,
    make_report,
    metrics,
    save_report,
)
from .run import evaluate_model

__all__ = [
    "__version__",
    # perplexity
    "perplexity", "PerplexityResult", "load_text", "TEXT_DATASETS",
    # lm-evaluation-harness
    "evaluate", "task_manager", "parse_tasks", "is_oom", "BACKENDS", "TASKS_DIR",
    # reports
    "evaluate_model", "make_report", "metrics", "format_table", "compare_results", "format_comparison",
    "Comparison", "save_report", "load_report",
    # models
    "load_model", "parse_devices", "quantization_config",
    # errors
    "EvalError", "MissingDependencyError",
]

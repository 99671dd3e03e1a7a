"""ar-calib: a dataset specification in, tokenized calibration samples out.

>>> from ar_calib import load_samples
>>> samples = load_samples("calib.txt,chats.jsonl:num=4:apply_chat_template", tok, 16, 512)  # doctest: +SKIP
"""
# ruff: noqa: I001  (imports grouped like __all__, by topic)
from .__about__ import __version__

# the spec grammar
from .spec import DatasetEntry, format_dataset_spec, parse_dataset_spec

# loading samples
from .loader import load_samples, validate_dataset_spec
from .hub import DEFAULT_DATASET
from .sources import embedded_corpus_path
from . import builtin as _builtin  # noqa: F401  (registers the shipped datasets)

# named datasets
from .registry import register_dataset, registered_datasets, unregister_dataset

# errors
from .errors import CalibError

__all__ = [
    "__version__",
    # the spec grammar
    "DatasetEntry", "parse_dataset_spec", "format_dataset_spec",
    # loading samples
    "load_samples", "validate_dataset_spec", "DEFAULT_DATASET", "embedded_corpus_path",
    # named datasets
    "register_dataset", "registered_datasets", "unregister_dataset",
    # errors
    "CalibError",
]

"""Load an lm-eval task's documents from a local JSON/JSONL file: no hub, no network.

Used from a task YAML as ``custom_dataset: !function local.load_jsonl`` (next to this file)
or ``!function ar_eval.tasks.local.load_jsonl`` (from anywhere), with
``dataset_kwargs: {data_file: ...}``. Each row may carry a ``split`` field (default ``test``);
rows are grouped into a ``DatasetDict`` by it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def resolve_data_file(data_file: str | Path) -> Path:
    """Absolute paths as given; relative ones against the working directory, then this folder."""
    path = Path(data_file).expanduser()
    for candidate in (path, Path.cwd() / path, HERE / path):
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(f"task data file {str(data_file)!r} not found (looked in the working "
                            f"directory and {HERE}); give an absolute path in dataset_kwargs.data_file")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """A JSONL file (one object a line) or a JSON file holding a list of objects."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        rows = json.loads(text)
        return rows if isinstance(rows, list) else rows["data"]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def load_jsonl(data_file: str | Path = "", **_: Any) -> Any:
    """The task's splits as a ``datasets.DatasetDict``; lm-eval also passes task metadata, ignored."""
    import datasets

    if not data_file:
        raise ValueError("load_jsonl needs dataset_kwargs: {data_file: path/to/file.jsonl} in the task YAML")
    splits: dict[str, list[dict[str, Any]]] = {}
    for row in read_rows(resolve_data_file(data_file)):
        splits.setdefault(row.pop("split", "test"), []).append(row)
    return datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()})

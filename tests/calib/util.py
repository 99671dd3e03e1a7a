"""Helpers for the ar-calib tests: texts over the tiny word-level vocabulary, files, tokenizers."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import tiny_tokenizer

# system -> t3, user -> t4, assistant -> t5: every piece of the rendered chat is in the vocabulary.
CHAT_TEMPLATE = ("{% for m in messages %}{{ {'system': 't3', 'user': 't4', 'assistant': 't5'}[m['role']] }} "
                 "{{ m['content'] }} {% endfor %}")


def words(n: int, start: int = 30) -> str:
    """``n`` words t{start}, t{start+1}, ... wrapping inside 30..99. (The fixture's special tokens
    t0, t1, t2 also match inside longer words, so t1x and t2xx would not map to one id.)"""
    return " ".join(f"t{30 + (start - 30 + i) % 70}" for i in range(n))


def write_jsonl(path: Path, items: list) -> Path:
    path.write_text("\n".join(json.dumps(x) for x in items) + "\n", encoding="utf-8")
    return path


def bos_tokenizer():
    """The tiny tokenizer with a post-processor adding BOS (t2), like Llama's: checks that a .txt
    is tokenized with special tokens, as the side-by-side benchmark does."""
    from tokenizers.processors import TemplateProcessing
    tok = tiny_tokenizer()
    tok.backend_tokenizer.post_processor = TemplateProcessing(single="t2 $A", pair="t2 $A $B", special_tokens=[("t2", 2)])
    return tok


def chat_tokenizer():
    tok = tiny_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    return tok

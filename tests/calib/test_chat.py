"""Chat templates through the tokenizer, with an optional system prompt whose spaces are kept."""
from __future__ import annotations

import json

import pytest

from ar_calib import CalibError, load_samples

from .util import chat_tokenizer, words, write_jsonl


def test_texts_become_user_turns(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [words(6, 40)])
    (s,) = load_samples(f"{path}:apply_chat_template", chat_tokenizer(), 1, 7, cache_dir=False)
    assert s.tolist() == [4] + list(range(40, 46))  # t4 = the user marker of the template


def test_system_prompt_is_prepended_with_its_spaces(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [words(4, 60)])
    spec = f"{path}:system_prompt=t7  t8 t9"
    (s,) = load_samples(spec, chat_tokenizer(), 1, 9, cache_dir=False)
    assert s.tolist() == [3, 7, 8, 9, 4, 60, 61, 62, 63]


def test_messages_keep_their_own_system_turn(tmp_path):
    msgs = [{"role": "system", "content": "t9"}, {"role": "user", "content": words(2, 50)},
            {"role": "assistant", "content": words(2, 70)}]
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"messages": msgs}) + "\n")
    (s,) = load_samples(f'{path}:system_prompt="t8"', chat_tokenizer(), 1, 8, cache_dir=False)
    assert s.tolist() == [3, 9, 4, 50, 51, 5, 70, 71]
    (plain,) = load_samples(str(path), chat_tokenizer(), 1, 5, cache_dir=False)  # no template: contents joined
    assert plain.tolist() == [9, 50, 51, 70, 71]


def test_chat_and_concat_together(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [words(2, 30 + 2 * k) for k in range(4)])
    got = load_samples(f"{path}:apply_chat_template:concat", chat_tokenizer(), 2, 6, cache_dir=False)
    assert [t for s in got for t in s.tolist()].count(4) >= 3


def test_chat_errors(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "t.jsonl", [words(8)])
    with pytest.raises(CalibError, match="has no chat_template; drop the option"):
        load_samples(f"{path}:apply_chat_template", tokenizer, 1, 4, cache_dir=False)
    ids = write_jsonl(tmp_path / "ids.jsonl", [{"input_ids": [30, 31, 32, 33]}])
    with pytest.raises(CalibError, match="holds token ids"):
        load_samples(f"{ids}:apply_chat_template", chat_tokenizer(), 1, 4, cache_dir=False)

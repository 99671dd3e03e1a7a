"""spec.py: every option of the grammar, quoting, the errors, and a round-trip property."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ar_calib import CalibError, DatasetEntry, format_dataset_spec, parse_dataset_spec


def test_entries_and_every_option():
    a, b = parse_dataset_spec("a.txt, NeelNanda/pile-10k:split=train+validation:num=8:concat:apply_chat_template")
    assert a == DatasetEntry("a.txt")
    assert b == DatasetEntry("NeelNanda/pile-10k", splits=("train", "validation"), num=8, concat=True,
                             apply_chat_template=True)


@pytest.mark.parametrize("text, expected", [
    ("concat=true", True), ("concat=False", False), ("concat=1", True), ("concat=no", False), ("concat", True)])
def test_flags_take_optional_booleans(text, expected):
    assert parse_dataset_spec(f"x:{text}")[0].concat is expected


def test_system_prompt_keeps_inner_spaces_and_implies_chat():
    (e,) = parse_dataset_spec("x.jsonl:system_prompt=You are  a careful   assistant. ")
    assert e.system_prompt == "You are  a careful   assistant."
    assert e.apply_chat_template


@pytest.mark.parametrize("spec, prompt", [
    ('x:system_prompt="Hi, you: be brief"', "Hi, you: be brief"),
    ("x:system_prompt='say \"yes\", then stop'", 'say "yes", then stop'),
    (r'x:system_prompt="a \"quoted\" word \\ ok"', 'a "quoted" word \\ ok'),
    ('x:system_prompt="  edge spaces kept  "', "  edge spaces kept  "),
])
def test_quoted_values(spec, prompt):
    assert parse_dataset_spec(spec)[0].system_prompt == prompt


def test_quoted_name_and_windows_drive():
    assert parse_dataset_spec('"my:data,1.jsonl":num=2')[0] == DatasetEntry("my:data,1.jsonl", num=2)
    assert parse_dataset_spec(r"C:\data\calib.txt:num=4")[0] == DatasetEntry(r"C:\data\calib.txt", num=4)
    assert parse_dataset_spec("D:/calib.txt")[0].name == "D:/calib.txt"


@pytest.mark.parametrize("spec, needle", [
    ("", "empty dataset spec"),
    ("a.txt,,b.txt", "entry 2: empty dataset name"),
    ("a.txt,", "entry 2: empty dataset name"),
    (":num=3", "empty dataset name"),
    ("a.txt::num=3", "empty option"),
    ("a.txt:nmu=3", "unknown option 'nmu'; valid choices: split, num, concat, apply_chat_template, system_prompt"),
    ("a.txt:num=0", "num='0' is not a positive integer"),
    ("a.txt:num=-2", "num='-2' is not a positive integer"),
    ("a.txt:num=four", "num='four' is not a positive integer"),
    ("a.txt:num", "option 'num' needs a value"),
    ("a.txt:split=", "option 'split' needs a value"),
    ("a.txt:split=train++test", "empty split name"),
    ("a.txt:num=3:num=4", "option 'num' given twice"),
    ("a.txt:concat=maybe", "concat='maybe' is not a boolean"),
    ('a.txt:system_prompt="open', "unterminated quote"),
    ("a.txt:system_prompt=x:apply_chat_template=false", "apply_chat_template=false"),
    ("a.txt:system_prompt=Note: be brief", "quote a value"),
])
def test_every_malformed_part_has_a_clear_error(spec, needle):
    with pytest.raises(CalibError, match=None) as ei:
        parse_dataset_spec(spec)
    assert needle in str(ei.value)


def test_entry_validation_and_dict_round_trip():
    for bad in (dict(name=""), dict(name="x", num=0), dict(name="x", splits=()), dict(name="x", splits=("a+b",)),
                dict(name="x", system_prompt="hi"), dict(name="x", num=True)):
        with pytest.raises(CalibError):
            DatasetEntry(**bad)
    e = DatasetEntry("x", splits=("train",), num=3, apply_chat_template=True, system_prompt="s")
    assert DatasetEntry.from_dict(e.to_dict()) == e
    with pytest.raises(CalibError, match="version"):
        DatasetEntry.from_dict({**e.to_dict(), "version": 99})
    with pytest.raises(CalibError, match="must be a string"):
        parse_dataset_spec(["a.txt"])  # type: ignore[arg-type]


# ---- property: format then parse gives the same entries ---------------------------------------

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
_names = _text.filter(lambda s: s.strip() != "")
_splits = st.text(alphabet="abcdefgh_-:,'\" 0123456789", min_size=1, max_size=6).filter(
    lambda s: s.strip() == s and s != "")


@st.composite
def entries(draw):
    chat = draw(st.booleans())
    prompt = draw(st.one_of(st.none(), _text.filter(lambda s: s != ""))) if chat else None
    return DatasetEntry(
        name=draw(_names), splits=draw(st.one_of(st.none(), st.lists(_splits, min_size=1, max_size=3).map(tuple))),
        num=draw(st.one_of(st.none(), st.integers(1, 10_000))), concat=draw(st.booleans()),
        apply_chat_template=chat, system_prompt=prompt)


@settings(max_examples=150, deadline=None)
@given(st.lists(entries(), min_size=1, max_size=4))
def test_format_parse_round_trip(es):
    text = format_dataset_spec(es)
    assert parse_dataset_spec(text) == es
    assert format_dataset_spec(parse_dataset_spec(text)) == text


_pieces = list(":,=\"'\\ +/aC") + ["num", "split", "concat", "system_prompt", "apply_chat_template", "true", "3"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_pieces), max_size=20).map("".join))
def test_any_text_parses_or_raises_calib_error(text):
    try:
        entries_ = parse_dataset_spec(text)
    except CalibError:
        return
    assert parse_dataset_spec(format_dataset_spec(entries_)) == entries_

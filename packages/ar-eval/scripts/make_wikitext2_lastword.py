"""Build the shipped ``wikitext2_lastword`` task data from WikiText-2 (held-out eval part).

Why: an lm-eval task that runs with no hub needs its documents on disk. This builds a
lambada-style set (predict the last word of a passage from the passage before it) from the
evaluation text, so the data is never calibration text. Deterministic: same input, same file.

    python make_wikitext2_lastword.py path/to/wikitext2_eval.txt OUT.jsonl [--test 300 --train 20]
"""
from __future__ import annotations

import argparse
import json
import re

# WikiText keeps Moses-style tokenization; undo the common marks so passages read naturally.
_DETOK = [(" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."), (" , ", ", "), (" ; ", "; "), (" : ", ": "),
          (" 's ", "'s "), ("( ", "("), (" )", ")"), (' " ', ' "')]


def detok(text: str) -> str:
    for a, b in _DETOK:
        text = text.replace(a, b)
    return re.sub(r"\s+", " ", text).strip()


def passage(paragraph: str, min_words: int = 30, max_words: int = 90) -> dict | None:
    """The longest run of whole sentences (<= max_words) ending the paragraph's last usable sentence."""
    sentences = [s.strip() for s in detok(paragraph).split(" . ") if s.strip()]
    for end in range(len(sentences), 0, -1):
        last = sentences[end - 1].rstrip(" .").split(" ")
        if not (last[-1].isalpha() and len(last[-1]) >= 3):
            continue
        start = end - 1
        while start > 0 and len(" ".join(sentences[start - 1:end]).split()) <= max_words:
            start -= 1
        words = ". ".join(sentences[start:end]).rstrip(" .").split(" ")
        if min_words <= len(words) <= max_words:
            return {"context": " ".join(words[:-1]), "target": words[-1]}
    return None


def build(text: str, n_test: int, n_train: int) -> list[dict]:
    paragraphs = [ln for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("=")]
    items = [p for p in (passage(par) for par in paragraphs) if p is not None]
    step = max(1, len(items) // (n_test + n_train))
    picked = items[::step][: n_test + n_train]
    return [{**it, "split": "train" if i < n_train else "test"} for i, it in enumerate(picked)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("text")
    ap.add_argument("out")
    ap.add_argument("--test", type=int, default=300)
    ap.add_argument("--train", type=int, default=20)
    a = ap.parse_args()
    rows = build(open(a.text, encoding="utf-8").read(), a.test, a.train)
    with open(a.out, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()

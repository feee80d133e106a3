"""The words a dataset's captions use, and in how many captions each appears.

A word in nearly every caption is learned as part of every image; a concept detail that is captioned is not
learned into the trigger word. Seeing the counts is how people catch both. Words are counted once per
caption (document frequency), lower-cased; common English words are left out. Comma-separated phrases are
counted too, for tag-style captions ("1girl, red hair, smiling").

A word is listed as the captions spell it, lower-cased (not case-folded: "straße" stays, so Remove and the search
find it) and composed (NFC: an accent typed apart is one letter), with its combining marks (the vowel signs of
Hindi or Thai are part of the word, as the `regex` package's \\w has them and `re`'s has not).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

import regex
from flask import Blueprint, jsonify

from app import context
from app.store import natural_key

bp = Blueprint("caption_words", __name__)

WORD = regex.compile(r"[^\W_][\w'-]*")
TOP = 80
PHRASE_WORDS = 4  # a comma-separated part of at most this many words counts as a phrase (a tag)
STOPWORDS = frozenset("""
a an the and or but nor of in on at to for from by with without into onto over under near above below
is are was were be been being has have had having do does did this that these those it its it's he she his
her they them their there here as than then so such very just also while who whom whose which what where
when how one two some any each other into out up down off about against between through during before after
again further once both more most few no not only own same too can will would should could may might must
shall i you we us our your my me him himself herself itself themselves while image photo picture
""".split())


def count_words(captions: list[str], trigger: str = "") -> dict:
    """{"captions", "words": [{"word", "images"}], "phrases": [...], "trigger": {"word", "images"} | None},
    most frequent first (ties by word)."""
    words, phrases = Counter(), Counter()
    trigger_key = unicodedata.normalize("NFC", trigger.strip()).lower()
    with_trigger = 0
    for caption in captions:
        lowered = unicodedata.normalize("NFC", caption).lower()
        found = {w.strip("'-") for w in WORD.findall(lowered)}
        found = {w for w in found if w and w not in STOPWORDS and not w.isdigit() and w != trigger_key}
        words.update(found)
        parts = {" ".join(p.split()) for p in re.split(r"[,;\n]", lowered)}
        phrases.update(p for p in parts if p and len(p.split()) <= PHRASE_WORDS and p != trigger_key)
        if trigger_key and regex.search(rf"(?<!\w){regex.escape(trigger_key)}(?!\w)", lowered):
            with_trigger += 1

    def top(counter: Counter) -> list[dict]:
        ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:TOP]
        return [{"word": word, "images": count} for word, count in ranked]

    # phrases only where captions are tag lists: a phrase shared by several captions, beyond single words
    shared = Counter({p: n for p, n in phrases.items() if n > 1 and " " in p})
    return {"captions": len(captions), "words": top(words), "phrases": top(shared),
            "trigger": {"word": trigger.strip(), "images": with_trigger} if trigger_key else None}


@bp.get("/api/datasets/<dataset_id>/captions/words")
def caption_words(dataset_id: str):
    dataset = context.dataset(dataset_id)
    meta = dataset.meta()
    names = sorted(meta["images"], key=natural_key)
    captions = [text for text in dataset.read_captions(names).values() if text and text.strip()]
    return jsonify({**count_words(captions, meta.get("trigger_word", "")), "images": len(names)})

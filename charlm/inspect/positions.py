"""Where ``charlm probe`` reads an agreement item: the subject's number and lemma, and the tokens
at aligned positions between the subject and the verb.

An item is read as the agreement scorer reads it: the fixed starting context
(:data:`charlm.evaluate.START_CONTEXT`), then its prefix. A word's position is its last token
(a character model's: the word's last character). The positions, by word of the prefix:

- ``before_subject``: the word before the subject's head noun (the starting context's last
  token where the noun is the first word);
- ``subject``: the head noun (``Item.subject_index``);
- the words between the noun and the word before the verb: ``subject+1``, ``subject+2``, ...
  where every item that has such words has the same number of them, else binned by their
  relative place in the span, ``between_1`` to ``between_4`` (each item at most once per bin:
  its last word there);
- ``before_verb``: the prefix's last word, whose state predicts the verb.

Items without ``subject_index`` have ``before_verb`` only.
"""

from __future__ import annotations

import functools
import importlib.util
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlm.errors import CharlmError

BINS = 4
LABELS = ("sg", "pl")  # label 0 and label 1
LEXICON = Path(__file__).resolve().parents[2] / "corpora" / "agreement" / "lexicon.py"
# Verb pairs whose number no -s rule gives, (singular, plural).
_VERB_PAIRS = {("is", "are"), ("was", "were"), ("has", "have"), ("does", "do")}
_IRREGULAR_SINGULARS = {"men": "man", "women": "woman", "children": "child", "people": "person",
                        "mice": "mouse", "geese": "goose", "feet": "foot", "teeth": "tooth"}


@dataclass(frozen=True)
class Aligned:
    """One item as the probe reads it."""

    item: object  # the charlm.agreement.formats.Item
    ids: np.ndarray  # (T,) int32: the starting context, then the prefix
    label: int  # 0 singular, 1 plural subject
    lemma: str  # the subject's singular form; "item FILE:LINE" where the item names no subject
    positions: dict  # position name -> index into ids (the names of the module docstring)
    # indices into ids of the last token of each word from the subject to the one before the verb
    # (empty without a subject): the word k after the subject is steps[k]
    steps: tuple


def item_number(item) -> tuple[str | None, str]:
    """``(number, where from)``: the item's ``subj_number``, else the number its correct form
    shows against its wrong one (is/are, was/were, has/have, does/do, a verb's -s); None if
    neither tells."""
    if item.subj_number in LABELS:
        return item.subj_number, "column"
    correct, wrong = (_first_word(form) for form in (item.correct, item.wrong))
    for singular, plural, number in ((correct, wrong, "sg"), (wrong, correct, "pl")):
        if (singular, plural) in _VERB_PAIRS or (plural and singular in _third_person(plural)):
            return number, "forms"
    return None, ""


def lemma(noun: str) -> str:
    """The singular form of a noun: from the bundled grammar's lexicon where it has the word,
    else by the common English rules; the word itself where none applies."""
    word = noun.lower()
    known = _lexicon_singulars().get(word)
    if known:
        return known
    if word in _IRREGULAR_SINGULARS:
        return _IRREGULAR_SINGULARS[word]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("ves"):
        return word[:-3] + "f"
    if word.endswith(("ses", "xes", "ches", "shes", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 2:
        return word[:-1]
    return word


def word_ends(tokenizer, text: str) -> list:
    """The index, among the tokens of ``text``, of each blank-separated word's last token."""
    from charlm.inspect.activations import text_pieces  # TensorFlow's import, only when reading

    pieces = text_pieces(tokenizer, text)
    if tokenizer.kind == "word":
        return [k for k, piece in enumerate(pieces) if piece != "\n"]
    # A character's last token is the one before the next character's first (a byte model's
    # multi-byte character is one piece and then empty ones).
    starts = [k for k, piece in enumerate(pieces) if piece != ""]
    ends = [*(s - 1 for s in starts[1:]), len(pieces) - 1]
    chars = [pieces[s] for s in starts]
    return [ends[j] for j, char in enumerate(chars)
            if not char.isspace() and (j + 1 == len(chars) or chars[j + 1].isspace())]


def align(items, tokenizer, context) -> tuple[list, Counter, Counter]:
    """``(aligned, skipped, number_sources)``: an :class:`Aligned` for each prefix item whose
    number is known, the reasons (with counts) the others were left out, and how many numbers
    came from the ``subj_number`` column and how many from the forms. ``context``: the ids of the
    starting context. One-line error where no item has a number."""
    aligned, skipped, sources = [], Counter(), Counter()
    for item in items:
        if item.is_pair:
            skipped["a sentence pair, not a prefix item"] += 1
            continue
        number, source = item_number(item)
        if number is None:
            skipped["no subject number"] += 1
            continue
        words = item.prefix.split()
        ends = word_ends(tokenizer, item.prefix)
        if not words or len(ends) != len(words):
            skipped["a prefix whose words the tokenizer does not keep apart"] += 1
            continue
        s = item.subject_index
        if s is not None and not 0 <= s < len(words):
            skipped["subject_index beyond the prefix's words"] += 1
            continue
        sources[source] += 1
        aligned.append(_aligned(item, tokenizer, context, number, words, ends))
    if not aligned and skipped["no subject number"]:
        raise CharlmError("the suite has no subject number for any item: give a subj_number column (sg/pl) "
                          "or verb forms whose number shows (is/are, was/were, has/have, -s)")
    return aligned, skipped, sources


def span_positions(aligned) -> list:
    """The names of the positions between the subject and the word before the verb:
    ``subject+1`` ... where every item with words there has the same number of them, else
    ``between_1`` ... ``between_4``."""
    spans = {len(a.steps) - 1 for a in aligned if len(a.steps) > 2}  # items with words in between
    if len(spans) == 1:
        return [f"subject+{k}" for k in range(1, spans.pop())]
    return [f"between_{b}" for b in range(1, BINS + 1)]


def position_order(aligned) -> list:
    """Every position name, in reading order."""
    return ["before_subject", "subject", *span_positions(aligned), "before_verb"]


def at_position(aligned, name: str) -> list:
    """``(k, index)`` for each item k that has position ``name``: the index into its ids."""
    out = []
    for k, a in enumerate(aligned):
        if name.startswith("subject+"):
            offset = int(name[len("subject+"):])
            index = a.steps[offset] if offset < len(a.steps) - 1 else None
        else:
            index = a.positions.get(name)
        if index is not None:
            out.append((k, index))
    return out


def position_label(name: str) -> str:
    """How a table or figure names a position."""
    if name.startswith("subject+"):
        return f"{name[len('subject+'):]} word(s) after the subject"
    if name.startswith("between_"):
        b = int(name[len("between_"):])
        return f"between subject and verb, {100 * (b - 1) // BINS}-{100 * b // BINS}% of the way"
    return name.replace("_", " ")


def _aligned(item, tokenizer, context, number, words, ends) -> Aligned:
    first = len(context)
    ids = np.concatenate([context, tokenizer.encode(item.prefix)]).astype(np.int32)
    at = [first + e for e in ends]  # each word's last token, in ids
    last = len(words) - 1
    positions = {"before_verb": at[last]}
    s = item.subject_index
    if s is None:
        return Aligned(item, ids, LABELS.index(number), f"item {item.source}:{item.line}", positions, ())
    positions["subject"] = at[s]
    before = at[s - 1] if s > 0 else first - 1
    if before >= 0:
        positions["before_subject"] = before
    span = last - s  # the words after the subject, the one before the verb included
    for k in range(1, span):  # a word k of span words along: bin 1 + floor(k * BINS / span)
        positions[f"between_{1 + k * BINS // span}"] = at[s + k]  # the bin's last word wins
    return Aligned(item, ids, LABELS.index(number), lemma(words[s]), positions, tuple(at[s:]))


def _first_word(form: str) -> str:
    words = form.split()
    return words[0].lower() if words else ""


def _third_person(plural: str) -> set:
    """The -s forms an English verb's plural (bare) form can have."""
    forms = {plural + "s", plural + "es"}
    if plural.endswith("y") and len(plural) > 1 and plural[-2] not in "aeiou":
        forms.add(plural[:-1] + "ies")
    return forms


@functools.cache
def _lexicon_singulars() -> dict:
    """plural -> singular for the nouns of the bundled grammar's lexicon (loaded from its file,
    which is no part of the installed package: empty where it is absent)."""
    if not LEXICON.exists():
        return {}
    spec = importlib.util.spec_from_file_location("charlm_agreement_lexicon", LEXICON)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {noun.pl: noun.sg for noun in (*module.ANIMATE_NOUNS, *module.THING_NOUNS)}


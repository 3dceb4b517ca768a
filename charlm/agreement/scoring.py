"""Scoring agreement items with a language model, many items per forward pass.

Every item is read from a fresh (zero) state primed with the same fixed context,
a line break (``<eol>`` for a word model): charlm's corpora hold one sentence a
line, so this puts the item's first word in the sentence-initial context the
model knows, and gives every item the same start, so no item's score depends on
what was scored before it.

- A prefix item compares log p(" " + form + boundary | context + prefix) for
  the two forms, where the boundary is the character that follows the form in
  the sentence (the first character of ``after``, a line break at the end of the
  sentence): without it "is" would also collect the probability of "island". A
  word model scores the form's word(s) alone: a word token is already whole.
- A sentence pair compares log p(sentence + line break | context) of the two.

The form with the higher log-probability wins; a tie counts as wrong.

Every text goes through the model's tokenizer, so a word model reads prefixes, forms and
sentences with the rules it was trained with (lower case, punctuation split off, numbers
mapped: :mod:`charlm.data.words`): BLiMP's "The keys are old." is read as "the keys are
old ." by a model trained that way.

An item whose forms (the words, or characters, where its two versions differ) the
vocabulary lacks is skipped, never scored as ``<unk>`` against ``<unk>``, as Linzen's and
Gulordava's code skip items whose verb forms are not in the vocabulary; the skips are
counted per condition. A scored item whose other words (prefix, the rest of the sentence)
hold unknown symbols is scored with ``<unk>`` there, and counted (``unknown_context``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from charlm.agreement.formats import Item, Skip, describe_skips, load
from charlm.agreement.stats import UNKNOWN, summarize
from charlm.errors import CharlmError
from charlm.evaluate import START_CONTEXT, TokenScorer, start_ids

MAX_ROWS = 256  # sequences per forward pass, at most
# The skip reasons of items whose forms the vocabulary lacks.
FORM_WORD_UNKNOWN = "a form has a word outside the model's vocabulary"
FORM_CHAR_UNKNOWN = "a form has a character outside the model's vocabulary"


@dataclass(frozen=True)
class Scored:
    """An item and the log-probabilities (nats) of its correct and wrong versions."""

    item: Item
    logp_correct: float
    logp_wrong: float
    unknown_context: bool = False  # the words around the forms hold a symbol outside the vocabulary

    @property
    def ok(self) -> bool:
        return self.logp_correct > self.logp_wrong


class ItemScorer:
    """Scores items with one :class:`charlm.nn.lm.LanguageModel`; reuse it across calls
    (for instance once per epoch) to keep its compiled forward pass."""

    def __init__(self, lm, context: str = START_CONTEXT):
        self.lm = lm
        self.tokenizer = lm.tokenizer
        self.context = start_ids(lm.tokenizer, context)
        self.end = start_ids(lm.tokenizer, "\n")
        # Not compiled with XLA: every batch of a suite has its own length, and each new shape
        # would compile anew, which costs more than it saves even with rounded lengths.
        self.scorer = TokenScorer(lm, jit_compile=False)

    def score(self, items) -> tuple[list, list]:
        """``(scored, skips)``: a :class:`Scored` for each item the tokenizer can
        represent, a :class:`charlm.agreement.formats.Skip` for each other."""
        sequences, kept, skips = [], [], []
        unk = self.tokenizer.unk_id
        for item in items:
            pair, reason = self.encode(item)
            if reason:
                skips.append(Skip(item.source, reason, 1, item.line, item.condition))
                continue
            # The forms are known (checked in encode), so any unknown id is another word's.
            kept.append((item, unk is not None and bool(np.any(pair[0][0] == unk))))
            sequences.extend(pair)
        logps = self.sequence_logprobs(sequences)
        scored = [Scored(item, logps[2 * k], logps[2 * k + 1], unknown) for k, (item, unknown) in enumerate(kept)]
        return scored, skips

    def encode(self, item: Item) -> tuple[list, str | None]:
        """The item's two token sequences as (ids, first scored index) pairs, or a
        reason it cannot be scored by this tokenizer."""
        encode, word = self.tokenizer.encode, self.tokenizer.kind == "word"
        if item.is_pair:
            good = np.concatenate([self.context, encode(item.correct), self.end])
            bad = np.concatenate([self.context, encode(item.wrong), self.end])
            first = max(1, len(self.context))
            versions = [(good, first), (bad, first)]
            changed = _differing(self._symbols(item.correct), self._symbols(item.wrong))
        else:
            base = np.concatenate([self.context, encode(item.prefix)])
            first = max(1, len(base))
            # " form" + boundary; a word model's tokens are whole words already.
            space = " " if item.prefix and not word else ""
            boundary = "" if word else self._boundary(item)
            continuations = [encode(space + form + boundary) for form in (item.correct, item.wrong)]
            versions = [(np.concatenate([base, c]), first) for c in continuations]
            changed = (self._symbols(item.correct), self._symbols(item.wrong))
        # Checked on the symbols themselves: two different unknown words would both
        # become <unk> and look identical.
        if self.tokenizer.unk_id is not None and any(self._unknown(x) for side in changed for x in side):
            return [], FORM_WORD_UNKNOWN if word else FORM_CHAR_UNKNOWN
        if np.array_equal(versions[0][0], versions[1][0]):
            return [], "the two forms are the same after tokenization"
        return [(ids.astype(np.int32), start) for ids, start in versions], None

    def _symbols(self, text: str) -> list:
        """The words (word model) or characters of ``text``."""
        return self.tokenizer.split(text) if self.tokenizer.kind == "word" else list(text)

    def _unknown(self, symbol: str) -> bool:
        return bool(np.any(self.tokenizer.encode(symbol) == self.tokenizer.unk_id))

    def _boundary(self, item: Item) -> str:
        """The character after the form: the first of ``after``, or the line break
        that ends a sentence (nothing where the vocabulary lacks it)."""
        if item.after:
            boundary = item.after[0]
            ids = self.tokenizer.encode(boundary)
            if self.tokenizer.unk_id is None or not np.any(ids == self.tokenizer.unk_id):
                return boundary
            return ""
        return "\n" if len(self.end) else ""

    def sequence_logprobs(self, sequences) -> list:
        """The summed log-probability of tokens ``ids[start:]`` given ``ids[:start]``
        for each (ids, start), from a zero state. Sequences are sorted by length and
        right-padded into batches; padding comes after every scored token, so the
        recurrence never reads it before a token that counts."""
        out = [0.0] * len(sequences)
        order = sorted(range(len(sequences)), key=lambda k: len(sequences[k][0]))
        pad = self.tokenizer.pad_id
        k = 0
        while k < len(order):
            # Sorted by length, so a batch's last sequence is its longest.
            batch = order[k : k + MAX_ROWS]
            batch = batch[: self.scorer.rows_for(len(sequences[batch[-1]][0]))]
            length = len(sequences[batch[-1]][0])
            k += len(batch)
            if length < 2:
                continue  # nothing to predict: every sum stays 0
            ids = np.full((len(batch), length), pad, np.int32)
            mask = np.zeros((len(batch), length - 1), bool)
            for row, index in enumerate(batch):
                seq, start = sequences[index]
                ids[row, : len(seq)] = seq
                # logp[:, t] is the log-probability of ids[:, t + 1].
                mask[row, start - 1 : len(seq) - 1] = True
            logp, _ = self.scorer(ids[:, :-1], ids[:, 1:])
            sums = np.where(mask, logp.astype(np.float64), 0.0).sum(axis=1)
            for row, index in enumerate(batch):
                out[index] = float(sums[row])
        return out


def _differing(a: list, b: list) -> tuple[list, list]:
    """Where two sequences differ: each without their common start and end."""
    n = min(len(a), len(b))
    start = next((k for k in range(n) if a[k] != b[k]), n)
    end = next((k for k in range(n - start) if a[len(a) - 1 - k] != b[len(b) - 1 - k]), n - start)
    return a[start : len(a) - end], b[start : len(b) - end]


def vocabulary_counts(scored, skips) -> dict:
    """``skipped_by_condition`` (condition -> skip reason -> items; items of unknown
    condition under ``"unknown"``) for the items skipped one by one, and
    ``unknown_context``: how many scored items, in all and by condition, read an unknown
    symbol outside their forms."""
    by_condition: dict = {}
    for skip in skips:
        if skip.count and skip.line is not None:  # one item's skip (not a whole file's)
            reasons = by_condition.setdefault(skip.condition or UNKNOWN, {})
            reasons[skip.reason] = reasons.get(skip.reason, 0) + skip.count
    unknown: dict = {}
    for s in scored:
        if s.unknown_context:
            key = s.item.condition or UNKNOWN
            unknown[key] = unknown.get(key, 0) + 1
    return {"skipped_by_condition": by_condition,
            "unknown_context": {"items": sum(unknown.values()), "by_condition": unknown}}


@dataclass
class AgreementResult:
    """``summary``: the JSON-ready figures (see :func:`charlm.agreement.stats.summarize`);
    ``scored``: a :class:`~charlm.agreement.scoring.Scored` per item; ``skips``: what was not scored."""

    summary: dict
    scored: list
    skips: list


def run_agreement(lm, paths=(), fmt: str = "auto", method: str = "sentence", scorer=None,
                  loaded=None, allow_empty: bool = False) -> AgreementResult:
    """Load the agreement data in ``paths``, score it with ``lm`` (a
    :class:`charlm.nn.lm.LanguageModel`) and summarize.

    ``scorer`` (an :class:`~charlm.agreement.scoring.ItemScorer`) and ``loaded``
    (a :func:`~charlm.agreement.formats.load` result) may be passed in to reuse
    them, as the per-epoch observer does. Raises :class:`CharlmError` when not a
    single item could be scored, naming what was skipped and why (unless
    ``allow_empty``: then the summary says ``n`` 0).
    """
    started = time.perf_counter()
    loaded = loaded or load(paths, fmt, method)
    scorer = scorer or ItemScorer(lm)
    scored, skips = scorer.score(loaded.items)
    skips = [*loaded.skips, *skips]
    summary = summarize([(s.item, s.ok) for s in scored], skips)
    if summary["n"] == 0 and not allow_empty:
        raise CharlmError(f"no agreement item could be scored: {describe_skips(skips) or 'no items found'}")
    summary.update(vocabulary_counts(scored, skips))
    summary.update(files=loaded.files, method=method, seconds=time.perf_counter() - started)
    return AgreementResult(summary, scored, skips)

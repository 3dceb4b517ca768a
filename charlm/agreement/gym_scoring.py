"""Scoring SyntaxGym suites with a language model: region surprisals, predictions, results.

Every condition of an item is one sentence, its regions' contents joined by single
spaces (empty regions add no space), read from a fresh state after the same
line-break context as every agreement item (see :mod:`charlm.agreement.scoring`).
A region's surprisal, in bits, is the sum (or the mean, per the suite's
``meta.metric``) of its tokens' surprisals: for character and byte models its
characters (bytes) and the one that ends it (the space after it, or the line break
after the last region; see :func:`charlm.agreement.syntaxgym.sentence_pieces`); for
word models its words. An empty region has surprisal 0.

An item is correct when all its suite's predictions hold; a suite's accuracy is
the share of correct items, and the overall score the mean over suites (Hu et
al. 2020). Accuracies carry 95% Wilson intervals.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from charlm.agreement.formats import Skip
from charlm.agreement.scoring import MAX_ROWS, ItemScorer
from charlm.agreement.stats import wilson
from charlm.agreement.syntaxgym import sentence_pieces

LN2 = math.log(2.0)


@dataclass
class GymResult:
    """``summary``: the JSON-ready figures; ``skips``: the items not scored."""

    summary: dict
    skips: list


class RegionScorer:
    """Region surprisals of SyntaxGym conditions with one model, many sentences a batch."""

    def __init__(self, lm, scorer: ItemScorer | None = None):
        self.scorer = scorer or ItemScorer(lm)
        self.tokenizer = lm.tokenizer
        self.word = self.tokenizer.kind == "word"

    def encode(self, regions) -> tuple:
        """``(ids, spans)`` of one condition: the token ids, context first, and each region's
        ``(number, start, end)`` in them; or ``(None, reason)`` where it cannot be scored."""
        context = self.scorer.context
        if not len(context):
            return None, "the model's vocabulary has no line break to start a sentence from"
        chunks, spans, position = [], [], len(context)
        for (number, _), piece in zip(sorted(regions), sentence_pieces(regions, self.word)):
            ids = self.tokenizer.encode(piece) if piece else np.zeros(0, np.int32)
            if self.tokenizer.unk_id is not None and np.any(ids == self.tokenizer.unk_id):
                what = "word" if self.word else "character"
                return None, f"region {number} has a {what} outside the model's vocabulary"
            chunks.append(ids)
            spans.append((number, position, position + len(ids)))
            position += len(ids)
        return np.concatenate([context, *chunks]).astype(np.int32), spans

    def token_logprobs(self, sequences) -> list:
        """For each id array, the natural log-probability of each token after the first given
        those before it, from a zero state; batched as :meth:`ItemScorer.sequence_logprobs`."""
        out = [np.zeros(max(len(s) - 1, 0)) for s in sequences]
        order = sorted(range(len(sequences)), key=lambda k: len(sequences[k]))
        pad = self.tokenizer.pad_id
        k = 0
        while k < len(order):
            batch = order[k : k + MAX_ROWS]
            batch = batch[: self.scorer.scorer.rows_for(len(sequences[batch[-1]]))]
            length = len(sequences[batch[-1]])
            k += len(batch)
            if length < 2:
                continue
            ids = np.full((len(batch), length), pad, np.int32)
            for row, index in enumerate(batch):
                ids[row, : len(sequences[index])] = sequences[index]
            logp, _ = self.scorer.scorer(ids[:, :-1], ids[:, 1:])
            logp = np.asarray(logp, np.float64)
            for row, index in enumerate(batch):
                out[index] = logp[row, : len(sequences[index]) - 1]
        return out


def region_surprisals(logp, spans, metric: str) -> dict:
    """Region number -> surprisal in bits, from a sentence's token log-probabilities
    (``logp[t]`` that of token ``t + 1``) and its region spans."""
    out = {}
    for number, start, end in spans:
        bits = -logp[start - 1 : end - 1] / LN2
        if metric == "mean":
            out[number] = float(bits.mean()) if len(bits) else 0.0
        else:
            out[number] = float(bits.sum())
    return out


def run_syntaxgym(lm, suites, skips=(), scorer: ItemScorer | None = None) -> GymResult:
    """Score ``suites`` (:class:`charlm.agreement.syntaxgym.Suite`) with ``lm``; ``skips``:
    the items already set aside when reading them."""
    started = time.perf_counter()
    regions = RegionScorer(lm, scorer)
    skips = list(skips)
    sequences, plan = [], []  # plan: (suite, item, {condition: (sequence index, spans)})
    for suite in suites:
        for item in suite.items:
            where, problem = {}, None
            for name, condition in item.conditions.items():
                ids, spans = regions.encode(condition)
                if ids is None:
                    problem = f"{suite.source}, item {item.number}: condition {name!r}: {spans}"
                    break
                where[name] = (len(sequences), spans)
                sequences.append(ids)
            if problem:
                del sequences[len(sequences) - len(where):]
                skips.append(Skip(suite.source, problem, 1))
            else:
                plan.append((suite, item, where))
    logps = regions.token_logprobs(sequences)
    by_suite = {id(suite): [] for suite in suites}
    for suite, item, where in plan:
        surprisal = {name: region_surprisals(logps[index], spans, suite.metric)
                     for name, (index, spans) in where.items()}
        lookup = {(number, name): bits for name, numbers in surprisal.items() for number, bits in numbers.items()}
        held = [formula(lookup) for formula in suite.predictions]
        by_suite[id(suite)].append({"item": item.number, "predictions": held, "correct": all(held),
                                    "surprisals": {name: {str(n): b for n, b in numbers.items()}
                                                   for name, numbers in surprisal.items()}})
    results = [_suite_summary(suite, by_suite[id(suite)]) for suite in suites]
    scored = [r for r in results if r["n"]]
    score = sum(r["accuracy"] for r in scored) / len(scored) if scored else None
    reasons = {}
    for skip in skips:
        reasons[skip.reason] = reasons.get(skip.reason, 0) + skip.count
    summary = {
        "score": score,
        "n_suites": len(scored),
        "n_items": sum(r["n"] for r in results),
        "skipped": sum(s.count for s in skips),
        "skipped_reasons": reasons,
        "suites": results,
        "seconds": time.perf_counter() - started,
    }
    return GymResult(summary, skips)


def _suite_summary(suite, items) -> dict:
    n = len(items)
    k = sum(1 for item in items if item["correct"])
    predictions = []
    for j, formula in enumerate(suite.predictions):
        held = sum(1 for item in items if item["predictions"][j])
        predictions.append({"formula": formula.text, "n": n, "correct": held,
                            "accuracy": held / n if n else None, "ci95": wilson(held, n)})
    return {"name": suite.name, "file": suite.source, "metric": suite.metric, "n": n, "correct": k,
            "accuracy": k / n if n else None, "ci95": wilson(k, n), "predictions": predictions, "items": items}

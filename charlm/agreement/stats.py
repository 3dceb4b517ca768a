"""Accuracy with Wilson intervals, broken down by group, beside content-blind baselines.

Baselines answer "how far does knowing nothing about the sentence get?", on the
same scored items as the model:

- ``always_singular`` / ``always_plural``: pick the singular (plural) form; the
  item's number is ``subj_number`` (the number the correct form agrees with).
  Computed on the items whose number is known, None where none is.
- ``shorter_form``: pick the shorter string (a model biased towards short
  continuations); a tie counts as half an item, the expected score of a coin flip.

Distance between the subject's head noun and the verb, for prefix items whose subject
position is known (``Item.subject_index``), in two units, each in buckets
(:data:`WORD_BUCKETS`, :data:`CHARACTER_BUCKETS`):

- words: the verb's word index minus the subject's, among the prefix's blank-separated
  words and the verb after them: 1 where the verb follows the noun ("the key is");
- characters: from the end of the noun to the start of the verb, which follows the
  prefix after one space: 1 in "the key is", 14 in "the key near the box is".
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

Z95 = 1.959963984540054  # the 97.5th percentile of the standard normal
BASELINES = ("always_singular", "always_plural", "shorter_form")
# (least, most) of each distance bucket, None: no upper end. Words: adjacent, one word
# between ("the old key"), a short phrase, a phrase, two stacked, more.
WORD_BUCKETS = ((1, 1), (2, 2), (3, 4), (5, 7), (8, 12), (13, None))
CHARACTER_BUCKETS = ((1, 10), (11, 20), (21, 40), (41, 60), (61, None))


def wilson(k: float, n: int, z: float = Z95) -> list:
    """The Wilson score interval [low, high] for ``k`` successes in ``n`` trials
    (95% for the default ``z``); [0, 1] for n = 0."""
    if n <= 0:
        return [0.0, 1.0]
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return [max(0.0, centre - half), min(1.0, centre + half)]


def baseline_scores(item) -> dict:
    """Each baseline's score on one item: 1, 0, 0.5 (a shorter-form tie) or None (unknown)."""
    number = item.subj_number
    shorter = (len(item.correct) < len(item.wrong)) + 0.5 * (len(item.correct) == len(item.wrong))
    return {
        "always_singular": None if number is None else float(number == "sg"),
        "always_plural": None if number is None else float(number == "pl"),
        "shorter_form": float(shorter),
    }


def group_summary(results) -> dict:
    """``accuracy``, ``n``, ``correct``, ``ci95`` and ``baselines`` of (item, correct) pairs."""
    n = len(results)
    k = sum(1 for _, ok in results if ok)
    baselines, counted = {}, {}
    for name in BASELINES:
        scores = [s for s in (baseline_scores(item)[name] for item, _ in results) if s is not None]
        baselines[name] = sum(scores) / len(scores) if scores else None
        counted[name] = len(scores)
    return {
        "accuracy": k / n if n else None,
        "n": n,
        "correct": k,
        "ci95": wilson(k, n),
        "baselines": baselines,
        "baselines_n": counted,
    }


def summarize(results, skips=()) -> dict:
    """Overall figures and breakdowns by file, condition, attractors and subject number,
    and by distance (``by_distance`` in words, ``by_char_distance`` in characters) where
    some item's subject position is known.

    ``results``: (item, correct) pairs of scored items; ``skips``: the
    :class:`charlm.agreement.formats.Skip` records of everything not scored.
    """
    overall = group_summary(results)
    reasons = defaultdict(int)
    for skip in skips:
        if skip.count:
            reasons[skip.reason] += skip.count
    return {
        **{k: overall[k] for k in ("accuracy", "n", "correct", "ci95")},
        "skipped": sum(s.count for s in skips),
        "skipped_reasons": dict(reasons),
        # Whole files that gave no items at all (unknown format, missing companion file, ...).
        "skipped_files": [{"file": s.source, "reason": s.reason} for s in skips if not s.count],
        "baselines": overall["baselines"],
        "baselines_n": overall["baselines_n"],
        "by_file": _breakdown(results, lambda item: item.source),
        "by_condition": _breakdown(results, lambda item: item.condition),
        "by_attractors": _breakdown(results, lambda item: item.n_attractors),
        "by_subj_number": _breakdown(results, lambda item: item.subj_number),
        # By distance only where some item says where its subject is.
        **({"by_distance": _bucketed(results, word_distance, WORD_BUCKETS),
            "by_char_distance": _bucketed(results, character_distance, CHARACTER_BUCKETS)}
           if any(item.subject_index is not None for item, _ in results) else {}),
    }


def word_distance(item) -> int | None:
    """Words from the subject's head noun to the verb (1: adjacent); None where unknown."""
    if item.prefix is None or item.subject_index is None:
        return None
    return len(item.prefix.split()) - item.subject_index


def character_distance(item) -> int | None:
    """Characters from the end of the subject's head noun to the start of the verb, which
    follows the prefix after one space (1: adjacent); None where unknown."""
    if item.prefix is None or item.subject_index is None:
        return None
    words = list(re.finditer(r"\S+", item.prefix))
    if item.subject_index >= len(words):
        return None
    return len(item.prefix) - words[item.subject_index].end() + 1


def bucket_label(bucket: tuple) -> str:
    """"3-4", "2" or "13+" for the bucket (least, most)."""
    least, most = bucket
    return f"{least}+" if most is None else str(least) if least == most else f"{least}-{most}"


def _bucketed(results, distance, buckets) -> dict:
    """Group summaries by the bucket of ``distance(item)``, in bucket order, labelled by
    :func:`bucket_label`; empty buckets left out, unknown distances in ``"unknown"``, last."""
    def which(item):
        value = distance(item)
        if value is None:
            return None
        return next((k for k, (least, most) in enumerate(buckets)
                     if value >= least and (most is None or value <= most)), None)

    groups = _breakdown(results, which)
    return {(name if name == UNKNOWN else bucket_label(buckets[int(name)])): group for name, group in groups.items()}


UNKNOWN = "unknown"  # the group of the items whose value is not known


def _breakdown(results, key) -> dict:
    """Group summaries keyed by ``key(item)`` as a string, in first-seen order
    (numbers in numeric order); items without a value (None) form the group
    ``"unknown"``, last, so the groups always add up to every scored item."""
    groups = defaultdict(list)
    for item, ok in results:
        groups[key(item)].append((item, ok))
    known = [value for value in groups if value is not None]
    order = sorted(known) if all(isinstance(v, int) for v in known) else known
    out = {str(value): group_summary(groups[value]) for value in order}
    if None in groups:
        unknown = groups[None]
        if UNKNOWN in out:  # a real group named "unknown": the two are one
            unknown = [*groups[UNKNOWN], *unknown]
            del out[UNKNOWN]
        out[UNKNOWN] = group_summary(unknown)
    return out

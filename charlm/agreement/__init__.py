"""Agreement tests: does the model prefer "the keys to the cabinet are" over "... is"?

- :mod:`charlm.agreement.formats` reads TSV suites, BLiMP JSONL and the Linzen/Gulordava layout.
- :mod:`charlm.agreement.scoring` compares the log-probabilities of the two forms, batched.
- :mod:`charlm.agreement.stats` gives accuracies with Wilson intervals, breakdowns and baselines.
- :mod:`charlm.agreement.plot` draws them; :mod:`charlm.agreement.observer` reports them per epoch.

:func:`run_agreement` is ``charlm agree`` in one call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from charlm.errors import CharlmError


@dataclass
class AgreementResult:
    """``summary``: the JSON-ready figures (see :func:`charlm.agreement.stats.summarize`);
    ``scored``: a :class:`~charlm.agreement.scoring.Scored` per item; ``skips``: what was not scored."""

    summary: dict
    scored: list
    skips: list


def run_agreement(lm, paths=(), fmt: str = "auto", method: str = "sentence", scorer=None,
                  loaded=None) -> AgreementResult:
    """Load the agreement data in ``paths``, score it with ``lm`` (a
    :class:`charlm.nn.lm.LanguageModel`) and summarize.

    ``scorer`` (an :class:`~charlm.agreement.scoring.ItemScorer`) and ``loaded``
    (a :func:`~charlm.agreement.formats.load` result) may be passed in to reuse
    them, as the per-epoch observer does. Raises :class:`CharlmError` when not a
    single item could be scored, naming what was skipped and why.
    """
    from charlm.agreement.formats import load
    from charlm.agreement.scoring import ItemScorer
    from charlm.agreement.stats import summarize

    started = time.perf_counter()
    loaded = loaded or load(paths, fmt, method)
    scorer = scorer or ItemScorer(lm)
    scored, skips = scorer.score(loaded.items)
    skips = [*loaded.skips, *skips]
    summary = summarize([(s.item, s.ok) for s in scored], skips)
    if summary["n"] == 0:
        raise CharlmError(f"no agreement item could be scored: {describe_skips(skips) or 'no items found'}")
    summary.update(files=loaded.files, method=method, seconds=time.perf_counter() - started)
    return AgreementResult(summary, scored, skips)


def describe_skips(skips) -> str:
    """What was skipped, in one line: counts of items per reason, then unusable files."""
    counts = {}
    for skip in skips:
        if skip.count:
            counts[skip.reason] = counts.get(skip.reason, 0) + skip.count
    parts = [f"{n} item{'s' * (n != 1)}: {reason}" for reason, n in counts.items()]
    parts += [f"{skip.source}: {skip.reason}" for skip in skips if not skip.count]
    return "; ".join(parts)

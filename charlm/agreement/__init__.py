"""Agreement tests: does the model prefer "the keys to the cabinet are" over "... is"?

- :mod:`charlm.agreement.formats` reads TSV/CSV suites, BLiMP JSONL and the Linzen/Gulordava layout.
- :mod:`charlm.agreement.syntaxgym` reads SyntaxGym suites and parses their prediction formulas;
  :mod:`charlm.agreement.gym_scoring` scores them (region surprisals, predictions, suite accuracies).
- :mod:`charlm.agreement.scoring` compares the log-probabilities of the two forms, batched.
- :mod:`charlm.agreement.stats` gives accuracies with Wilson intervals, breakdowns and baselines.
- :mod:`charlm.agreement.plot` draws them; :mod:`charlm.agreement.observer` reports them per epoch.

:func:`run_agreement` (in :mod:`charlm.agreement.scoring`) is ``charlm agree`` in one call.
"""

from charlm.agreement.skips import describe_skips

__all__ = ["run_agreement", "AgreementResult", "describe_skips"]


def __getattr__(name):
    # Scoring runs the model: importing it starts TensorFlow, which `charlm agree --help` must not.
    if name in ("run_agreement", "AgreementResult"):
        from charlm.agreement import scoring

        return getattr(scoring, name)
    raise AttributeError(f"module 'charlm.agreement' has no attribute {name!r}")

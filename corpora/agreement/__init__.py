"""The agreement language: charlm's bundled training corpus and agreement suites.

The generator lives in :mod:`corpora.agreement.grammar`; the committed default data,
written by :mod:`corpora.agreement.generate`, lives in ``data/`` beside this file.
"""

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"


def default_corpus_path() -> Path:
    """Return the absolute path of the committed training corpus, ``data/train.txt``."""
    return DATA_DIR / "train.txt"


def default_suite_path() -> Path:
    """Return the absolute path of the committed agreement suite, ``data/agreement.tsv``."""
    return DATA_DIR / "agreement.tsv"

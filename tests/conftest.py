"""Makes the shared fixtures of ``tests/helpers.py`` visible to every test. Tests import
constants and helpers from ``tests.helpers``, never from here."""

from tests.helpers import lm, tiny_corpus, tiny_model_path, tiny_run, wide_lm  # noqa: F401

"""charlm: recurrent (SimpleRNN, LSTM, GRU) text language models on Keras 3.

The public API:

- ``charlm.train(corpus, out=..., **settings)`` trains a model, like ``charlm train``.
- ``charlm.load(path)`` returns a :class:`charlm.LanguageModel` (a Keras model plus its
  tokenizer) from a ``model.keras`` file.
- ``charlm.Observer`` is the base of what watches a run (``charlm.train(observers=[...])``).
- ``charlm.CharlmError`` is every error a user can cause, with a one-line message.

``import charlm`` stays fast: the names that need TensorFlow load it when first used.
"""

import importlib

__version__ = "0.1.0"
__all__ = ["train", "load", "LanguageModel", "Observer", "CharlmError", "__version__"]

from charlm.errors import CharlmError

# Where the names that start TensorFlow live, imported on first use.
_LAZY = {
    "train": "charlm.training.run",
    "load": "charlm.nn.lm",
    "LanguageModel": "charlm.nn.lm",
    "Observer": "charlm.training.observers",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'charlm' has no attribute {name!r}")

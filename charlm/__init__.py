"""charlm: recurrent (SimpleRNN, LSTM, GRU) text language models on Keras 3.

The package imports TensorFlow lazily, so ``import charlm`` and ``charlm --help``
stay fast. The public API:

- ``charlm.train(corpus, out=..., **settings)`` trains a model, like ``charlm train``.
- ``charlm.load(path)`` returns a :class:`charlm.nn.lm.LanguageModel` (a Keras model
  plus its tokenizer) from a ``model.keras`` file.
"""

__version__ = "0.1.0"
__all__ = ["train", "load", "CharlmError", "__version__"]

from charlm.errors import CharlmError


def __getattr__(name):
    # Lazy attributes: importing them pulls in TensorFlow (2-3 s).
    if name == "train":
        from charlm.training.run import train

        return train
    if name == "load":
        from charlm.nn.lm import load

        return load
    raise AttributeError(f"module 'charlm' has no attribute {name!r}")

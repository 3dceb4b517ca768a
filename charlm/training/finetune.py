"""Fine-tuning: a run that starts from a trained model's weights and tokenizer.

The model's vocabulary is kept as it is: existing ids are never re-mapped (the
mistake that makes fine-tuned char-rnn models produce garbage). Symbols of the
new corpus that the vocabulary lacks map to the unknown symbol, and the run
reports how many there are. With ``extend_vocab`` they are appended to the
vocabulary instead, and the embedding and output layers grow by one row per new
symbol. Every new row starts as a copy of the unknown symbol's row: before the
first update the grown model reads a new symbol exactly as the old one read
``<unk>`` in its place, and its logits for the old symbols are those of the old
model (the new symbols get the unknown symbol's logit, which training on text
without unknowns has pushed low).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlm.data.tokenizers import DOC, EOL, PAD, UNK, Tokenizer, tokenizer_from_config

_SPECIALS = {PAD, UNK, EOL, DOC}


@dataclass(frozen=True)
class VocabularyReport:
    """How the new corpus fits the model's vocabulary."""

    unit: str  # "characters" or "words" (bytes are never unknown)
    total: int  # tokens the run trains and validates on
    unknown: int  # of those, outside the model's vocabulary (before any extension)
    symbols: tuple[str, ...]  # the distinct unknown symbols of the training part, most frequent first
    added: tuple[str, ...]  # appended to the vocabulary (extend_vocab)
    old_size: int
    new_size: int

    def describe(self, model_path) -> str:
        """One log line."""
        head = f"fine-tuning from {model_path}: "
        if not self.unknown:
            return head + f"every {self.unit[:-1]} of the new corpus is in the model's vocabulary of {self.old_size}"
        shown = ", ".join(repr(s) for s in self.symbols[:10]) + (", ..." if len(self.symbols) > 10 else "")
        line = (f"{head}{self.unknown:,} of {self.total:,} {self.unit} of the new corpus "
                f"({len(self.symbols)} distinct in its training part: {shown}) are outside the model's vocabulary")
        if self.added:
            return line + (f"; --extend-vocab added {len(self.added)}, growing it from {self.old_size} to "
                           f"{self.new_size} (new embedding and output rows start as copies of <unk>'s)")
        return line + "; they map to <unk> (pass --extend-vocab to add them to the vocabulary)"

    def to_json(self) -> dict:
        return {"unit": self.unit, "total": self.total, "unknown": self.unknown,
                "added": list(self.added), "old_size": self.old_size, "new_size": self.new_size}


def adapt_tokenizer(tokenizer: Tokenizer, fresh, extend: bool) -> tuple[Tokenizer, tuple[str, ...], tuple[str, ...]]:
    """The tokenizer for fine-tuning: the model's own, or with ``extend`` the model's
    followed by the symbols of the new corpus's training part that it lacks (ids of
    old symbols unchanged). ``fresh`` is the new corpus prepared with a vocabulary of
    its own (:func:`charlm.data.prepare.prepare` without a tokenizer). New characters come in
    code point order, new words most frequent first, as when a vocabulary is built.

    Returns (tokenizer, the unknown symbols most frequent first, the added symbols)."""
    if tokenizer.unk_id is None:  # bytes: nothing is unknown
        return tokenizer, (), ()
    counts = np.bincount(np.asarray(fresh.train.streams).ravel(), minlength=fresh.tokenizer.vocab_size)
    missing = {s: int(counts[i]) for i, s in enumerate(fresh.tokenizer.vocabulary)
               if counts[i] and s not in tokenizer.index and s not in _SPECIALS}
    symbols = tuple(sorted(missing, key=lambda s: (-missing[s], s)))
    if not extend or not symbols:
        return tokenizer, symbols, ()
    added = tuple(sorted(symbols)) if tokenizer.kind == "char" else symbols
    grown = tokenizer_from_config({**tokenizer.get_config(), "vocabulary": [*tokenizer.vocabulary, *added]})
    return grown, symbols, added


def vocabulary_report(tokenizer: Tokenizer, data, symbols, added) -> VocabularyReport:
    """Count the tokens of ``data`` (prepared with ``tokenizer``) that the model's own
    vocabulary lacks: those mapped to the unknown symbol plus those of ``added``."""
    ids = np.concatenate([np.asarray(data.train.streams).ravel(), np.asarray(data.validation.streams).ravel()])
    unknown_ids = [i for i in [tokenizer.unk_id, *(tokenizer.index[s] for s in added)] if i is not None]
    return VocabularyReport(
        unit="words" if tokenizer.kind == "word" else "characters", total=int(ids.size),
        unknown=int(np.isin(ids, unknown_ids).sum()), symbols=tuple(symbols), added=tuple(added),
        old_size=tokenizer.vocab_size - len(added), new_size=tokenizer.vocab_size,
    )


def transfer_weights(source, target, unk_id: int | None):
    """Copy the weights of the ``source`` Keras model into ``target``, a model of the same
    architecture whose vocabulary may be longer (dropout may differ: it has no weights).
    Extra embedding rows and output columns copy those of ``unk_id``."""
    for layer in target.layers:
        if not layer.weights:
            continue
        weights = source.get_layer(layer.name).get_weights()
        if layer.name == "embedding":  # (V, E): one row per symbol
            weights = [_grow(weights[0], layer.input_dim, unk_id, axis=0)]
        elif layer.name == "logits":  # kernel (H, V), bias (V,): one column per symbol
            weights = [_grow(weights[0], layer.units, unk_id, axis=1), _grow(weights[1], layer.units, unk_id, axis=0)]
        elif layer.name == "output_bias":  # a tied model's output bias, kernel (1, V)
            weights = [_grow(weights[0], layer.units, unk_id, axis=1)]
        layer.set_weights(weights)


def _grow(array: np.ndarray, size: int, unk_id, axis: int) -> np.ndarray:
    extra = size - array.shape[axis]
    if extra == 0:
        return array
    copies = np.repeat(np.take(array, [unk_id], axis=axis), extra, axis=axis)
    return np.concatenate([array, copies], axis=axis)

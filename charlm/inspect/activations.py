"""Every value inside a model, per token: each layer's h, an LSTM's c and gates, a GRU's gates,
a SimpleRNN's pre-activation, and what the model predicts at each token.

The values are recomputed from the model's own weights with the kernels' cell arithmetic
(:func:`charlm.nn.kernels.rnn_trace`), since Keras' layers return h only. A text is read as
``charlm eval`` reads it with one stream: after the same line-break context, as one continuous
stream whose state carries from each window of tokens to the next, so memory beyond the result
itself does not grow with the text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlm.data.tokenizers import EOL, normalize
from charlm.errors import CharlmError
from charlm.evaluate import start_ids, token_label
from charlm.nn.kernels import TRACED, rnn_trace
from charlm.nn.model import output_logits, recurrent_layers
from charlm.runtime import import_keras

import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

WINDOW = 256  # tokens per forward pass
NAMES = {"i": "input gate", "f": "forget gate", "g": "candidate", "o": "output gate", "c": "cell state",
         "h": "hidden state", "z": "update gate", "r": "reset gate", "a": "pre-activation"}


@dataclass
class Activations:
    """What a model computed at each of the N tokens of a text.

    Attributes:
        cell: "lstm", "gru" or "rnn".
        ids: (N,) int32 token ids.
        tokens: the N tokens as readable labels (see :func:`charlm.evaluate.token_label`):
            unknown ones as the unknown symbol.
        pieces: the text of each of the N tokens as it stands in the input (a word model's
            line breaks as "\n"; a byte model's multi-byte character on its first byte, "" on
            the others), so that they join up to the text.
        values: per layer (bottom first), a dict from the names of
            :data:`charlm.nn.kernels.TRACED` to (N, H) float32 arrays: the value after reading
            the token (LSTM i, f, g (the candidate), o, c, h; GRU z, r, g (the candidate), h;
            SimpleRNN a (the pre-activation), h).
        logp: (N,) natural log-probability of each token given everything before it (NaN for a
            first token that had no context to be predicted from).
        top_ids, top_probs: (N, k) the k most likely next tokens after each token, and their
            probabilities (k = 0 unless asked for).
        final_states: the states after the last token, in the model's input order, (H,) each.
    """

    cell: str
    ids: np.ndarray
    tokens: list
    pieces: list
    values: list
    logp: np.ndarray
    top_ids: np.ndarray
    top_probs: np.ndarray
    final_states: list

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def layers(self) -> int:
        return len(self.values)

    @property
    def units(self) -> int:
        return self.values[0]["h"].shape[1]

    def get(self, name: str, layer: int) -> np.ndarray:
        """The (N, H) values of ``name`` (``h``, ``c``, ``f``, ...) in ``layer`` (0 is the bottom)."""
        if not 0 <= layer < self.layers:
            raise CharlmError(f"layer {layer + 1} does not exist: the model has {self.layers} layer(s), 1 to {self.layers}")
        if name not in self.values[layer]:
            raise CharlmError(f"a {self.cell} layer has no {name!r}; it has {', '.join(TRACED[self.cell])}")
        return self.values[layer][name]


@dataclass
class Window:
    """One window of a text as :func:`read_windows` reads it."""

    at: slice  # the text positions of the rows of ``values``, ``top_ids`` and ``top_probs``
    values: list  # per layer {name: (rows, H)}; empty for a layer not kept
    predicted: np.ndarray  # the text positions whose log-probability ``logp`` holds
    logp: np.ndarray
    top_ids: np.ndarray  # (rows, k)
    top_probs: np.ndarray  # (rows, k)
    states: list  # the states after the window's last token, (1, H) each


def activations(lm, text: str, names=None, layers=None, top_k: int = 0, window: int = WINDOW) -> Activations:
    """The values inside ``lm`` (a :class:`charlm.nn.lm.LanguageModel`) at every token of
    ``text``; see :class:`Activations`. ``names`` and ``layers`` (0-based) restrict what is kept
    (default: everything), which bounds the memory of long texts; ``top_k`` also keeps the
    ``top_k`` most likely next tokens after each token."""
    ids = lm.tokenizer.encode(text).astype(np.int32) if text else np.zeros(0, np.int32)
    n, top_k = len(ids), min(top_k, lm.tokenizer.vocab_size)
    names, layers = _check(lm, text, names, layers)
    values = [{name: np.zeros((n, lm.config.hidden), np.float32) for name in names} if i in layers else {}
              for i in range(lm.config.layers)]
    logp = np.full(n, np.nan)
    top_ids, top_probs = np.zeros((n, top_k), np.int32), np.zeros((n, top_k), np.float32)
    states = None
    for part in read_windows(lm, ids, names, layers, top_k, window):
        for kept, part_values in zip(values, part.values):
            for name in kept:
                kept[name][part.at] = part_values[name]
        logp[part.predicted] = part.logp
        top_ids[part.at], top_probs[part.at] = part.top_ids, part.top_probs
        states = part.states
    return Activations(lm.config.cell, ids, [token_label(lm.tokenizer, i) for i in ids],
                       text_pieces(lm.tokenizer, text), values, logp, top_ids, top_probs,
                       [s.numpy()[0] for s in states])


def read_windows(lm, ids, names=None, layers=None, top_k: int = 0, window: int = WINDOW):
    """The values inside ``lm`` over the token ids ``ids`` of a text, one :class:`Window` of
    up to ``window`` tokens at a time, for callers that summarise a long text as they read it
    (memory does not grow with the text). The text is read after the fixed line-break context
    of :func:`charlm.evaluate.start_ids`, the state carried from window to window."""
    names, layers = _check(lm, "text" if len(ids) else "", names, layers)
    start = start_ids(lm.tokenizer)
    seq = np.concatenate([start, ids]).astype(np.int32)  # the model predicts seq[j+1] after reading seq[j]
    n, first = len(ids), len(start)
    trace = _tracer(lm, names, layers, min(top_k, lm.tokenizer.vocab_size))
    states = lm.zero_states(1)
    for begin in range(0, len(seq), window):
        chunk = seq[begin : begin + window]
        targets = np.append(seq[begin + 1 : begin + window + 1], 0)[: len(chunk)]  # the last has none
        layer_values, chunk_logp, chunk_top, chunk_probs, states = trace(chunk[None, :], targets[None, :], states)
        # Row j of the chunk is token begin + j of seq, i.e. token begin + j - first of the text.
        lo = max(begin, first)
        rows, at = slice(lo - begin, len(chunk)), slice(lo - first, begin + len(chunk) - first)
        predicted = np.arange(begin, begin + len(chunk)) + 1 - first  # text position of seq[j+1]
        valid = (predicted >= 0) & (predicted < n)
        yield Window(at, [{name: v[0, rows] for name, v in kept.items()} for kept in layer_values],
                     predicted[valid], chunk_logp[0, valid], chunk_top[0, rows], chunk_probs[0, rows], states)


def _check(lm, text, names, layers) -> tuple[tuple, tuple]:
    """The names and layers asked for (default: all), checked; one-line errors."""
    if not text:
        raise CharlmError("the text is empty")
    cell = lm.config.cell
    names = tuple(TRACED[cell] if names is None else names)
    for name in names:
        if name not in TRACED[cell]:
            raise CharlmError(f"a {cell} layer has no {name!r}; it has {', '.join(TRACED[cell])}")
    layers = tuple(range(lm.config.layers) if layers is None else layers)
    for layer in layers:
        if not 0 <= layer < lm.config.layers:
            raise CharlmError(f"layer {layer + 1} does not exist: the model has {lm.config.layers} "
                              f"layer(s), 1 to {lm.config.layers}")
    return names, layers


def text_pieces(tokenizer, text: str) -> list:
    """The text of each token of ``text`` as it stands there (see :attr:`Activations.pieces`)."""
    if tokenizer.kind == "word":
        return ["\n" if word == EOL else word for word in tokenizer.split(text)]
    text = normalize(text, getattr(tokenizer, "normalization", None))
    if tokenizer.kind == "char":
        return list(text)
    return [piece for char in text for piece in [char] + [""] * (len(char.encode("utf-8")) - 1)]


def _tracer(lm, names, layers, top_k):
    """The compiled pass ``(tokens (1, T), targets (1, T), states) -> (per layer {name: (1, T, H)}
    (empty for the layers not in ``layers``), logp (1, T), top ids (1, T, k), top probs (1, T, k),
    final states)``, with NumPy arrays but for the states."""
    model, config = lm.model, lm.config
    embedding = model.get_layer("embedding").embeddings
    rnns, output = recurrent_layers(model), output_logits(model)
    k = config.states_per_layer

    @tf.function(reduce_retracing=True)
    def trace(tokens, targets, states):
        x, first_embedding = tokens, embedding
        per_layer, final = [], []
        for i, rnn in enumerate(rnns):
            cell = rnn.cell
            values, layer_final = rnn_trace(config.cell, x, list(states[i * k : (i + 1) * k]), cell.kernel,
                                            cell.recurrent_kernel, cell.bias, embedding=first_embedding)
            first_embedding = None
            x = values["h"]
            per_layer.append({name: values[name] for name in names} if i in layers else {})
            final.extend(layer_final)
        logits = tf.cast(output(x), tf.float32)  # (1, T, V)
        logp = -tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits)
        probs, top = tf.math.top_k(tf.nn.softmax(logits), k=top_k)  # (1, T, k) each
        return per_layer, logp, top, probs, final

    def run(tokens, targets, states):
        per_layer, logp, top, probs, final = trace(tf.constant(tokens), tf.constant(targets), list(states))
        return ([{name: v.numpy() for name, v in layer.items()} for layer in per_layer], logp.numpy(),
                top.numpy(), probs.numpy(), final)

    return run

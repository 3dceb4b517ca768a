"""A model's log-probabilities over a text: the engine of ``charlm eval`` and ``charlm score``.

A text is read as ONE continuous stream, the recurrent state carried from each
token to the next, as if the model read it in a single pass. For speed the token
sequence is cut into up to ``streams`` contiguous pieces that run side by side as
the rows of one batch, each piece in windows of ``window`` tokens. Nothing is
dropped: pieces of unequal length are right-padded and the padding is never
scored. A piece other than the first starts ``warmup`` tokens early: those
tokens are read, to warm its state up, but scored by the piece before, so every
token is scored exactly once and (for a ``warmup`` longer than the model's
memory) as it would be in one serial pass. ``streams=1`` is the serial pass.

Every text is preceded by the same fixed context, a line break (``<eol>`` for a
word model): the training corpora are one sentence or paragraph per line, so the
first token is predicted as a line-initial token rather than not at all. Where
the vocabulary has no line break, the first token is read but not scored.
"""

from __future__ import annotations

import math
import time
import unicodedata

import numpy as np

from charlm.config import StreamSettings
from charlm.errors import CharlmError
from charlm.nn.forward import make_forward
from charlm.runtime import choose_kernels, import_keras

import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

# The context every text or agreement item starts from (see the module docstring).
START_CONTEXT = "\n"
# Most logits one forward pass may hold, in floats (rows x window x vocabulary): 32 MiB.
LOGITS_BUDGET = 1 << 23




class TokenScorer:
    """One compiled forward pass of a :class:`charlm.nn.lm.LanguageModel` that returns,
    instead of logits, the natural log-probability of each target token.

    ``scorer(inputs, targets, states) -> (logp, new_states)``: inputs and targets
    (B, T) int32, states a list of (B, H) arrays (None: zeros); logp (B, T) float32.
    Shapes are left open, so batches of any size and length share one trace. The kernels
    are :func:`charlm.runtime.choose_kernels`' (charlm's forward-only kernels on a CPU, Keras'
    cuDNN layers on a GPU); ``jit_compile`` (default: its choice) compiles the pass with XLA,
    once per batch shape: right for the few shapes of a streamed text.
    """

    def __init__(self, lm, jit_compile: bool | None = None):
        self.lm = lm
        kernels = choose_kernels(lm.config, bool(tf.config.list_logical_devices("GPU")))
        self.forward = make_forward(lm.model, lm.config, kernels.charlm, differentiable=False)
        self.jit_compile = kernels.xla if jit_compile is None else jit_compile
        self.vocab_size = lm.tokenizer.vocab_size
        self.n_states = len(lm.zero_states(1))
        ids = tf.TensorSpec((None, None), tf.int32)
        states = [tf.TensorSpec((None, lm.config.hidden), tf.float32)] * self.n_states
        self._step = tf.function(self._logprobs, input_signature=[ids, ids, states],
                                 jit_compile=self.jit_compile)

    def _logprobs(self, inputs, targets, states):
        logits, new_states = self.forward(inputs, states, False)
        # log p(target) = -cross-entropy, computed in float32 whatever the model's dtype.
        logp = -tf.nn.sparse_softmax_cross_entropy_with_logits(targets, tf.cast(logits, tf.float32))
        return logp, new_states

    def __call__(self, inputs, targets, states=None):
        inputs = np.ascontiguousarray(inputs, dtype=np.int32)
        if states is None:
            states = self.lm.zero_states(inputs.shape[0])
        logp, new_states = self._step(inputs, np.ascontiguousarray(targets, dtype=np.int32), list(states))
        return logp.numpy(), new_states

    def rows_for(self, length: int) -> int:
        """How many sequences of ``length`` tokens fit in one pass under :data:`LOGITS_BUDGET`."""
        return max(1, LOGITS_BUDGET // max(1, length * self.vocab_size))


def start_ids(tokenizer, context: str = START_CONTEXT) -> np.ndarray:
    """The ids of the fixed starting context, or none where the vocabulary cannot
    represent it (a char vocabulary without a line break)."""
    ids = tokenizer.encode(context) if context else np.zeros(0, np.int32)
    if tokenizer.unk_id is not None and np.any(ids == tokenizer.unk_id):
        return np.zeros(0, np.int32)
    return ids.astype(np.int32)


def plan_streams(n: int, settings: StreamSettings) -> int:
    """How many parallel pieces ``n`` scored tokens are cut into: up to ``settings.streams``,
    each at least four windows long (with the default warm-up of one window, reading
    the warm-up costs at most a quarter more)."""
    return max(1, min(settings.streams, n // (4 * settings.window)))


def pass_window(streams: int, vocab_size: int, settings: StreamSettings = StreamSettings()) -> int:
    """How many tokens of each of ``streams`` rows one forward pass reads: ``settings.window``,
    or fewer where the pass's logits (streams x window x vocabulary floats) would pass
    :data:`LOGITS_BUDGET` (a large vocabulary), but at least one."""
    return max(1, min(settings.window, LOGITS_BUDGET // (streams * vocab_size)))


def stream_logprobs(scorer: TokenScorer, ids, start, settings: StreamSettings = StreamSettings()) -> np.ndarray:
    """Natural log-probability of every token of ``start + ids`` after the first,
    each given everything before it, as one stream (see the module docstring).

    Returns a float64 array of ``len(start) + len(ids) - 1`` values: with one start
    token, exactly one per token of ``ids``.
    """
    seq = np.concatenate([np.asarray(start, np.int32), np.asarray(ids, np.int32)])
    inputs, targets = seq[:-1], seq[1:]
    n = len(targets)
    if n <= 0:
        return np.zeros(0)
    b = plan_streams(n, settings)
    bounds = np.linspace(0, n, b + 1).astype(int)
    # Row i reads inputs[first_read:end] and scores positions [begin, end).
    rows = [(max(0, bounds[i] - settings.warmup), bounds[i], bounds[i + 1]) for i in range(b)]
    length = max(end - first for first, _, end in rows)
    pad = scorer.lm.tokenizer.pad_id
    x = np.full((b, length), pad, np.int32)
    y = np.full((b, length), pad, np.int32)
    for i, (first, _, end) in enumerate(rows):
        x[i, : end - first] = inputs[first:end]
        y[i, : end - first] = targets[first:end]
    window = pass_window(b, scorer.vocab_size, settings)
    logp = np.zeros((b, length))
    states = None
    for k in range(0, length, window):
        chunk, states = scorer(x[:, k : k + window], y[:, k : k + window], states)
        logp[:, k : k + window] = chunk
    out = np.empty(n)
    for i, (first, begin, end) in enumerate(rows):
        out[begin:end] = logp[i, begin - first : end - first]
    return out


def text_logprobs(lm, text: str, settings: StreamSettings = StreamSettings(), scorer=None):
    """``(ids, logp)``: the token ids of ``text`` and the log-probability of each (NaN
    for a first token that could not be scored), both of the same length."""
    scorer = scorer or TokenScorer(lm)
    ids = lm.tokenizer.encode(text)
    start = start_ids(lm.tokenizer)
    logp = stream_logprobs(scorer, ids, start, settings)
    if not len(start) and len(ids):
        logp = np.concatenate([[np.nan], logp])
    return ids, logp


def evaluate(lm, text: str, settings: StreamSettings = StreamSettings()) -> dict:
    """The model's loss on ``text`` read as one stream: :func:`text_figures`, and the
    batching used (``streams``, ``window``, ``warmup``), ``seconds`` and ``tokens_per_s``."""
    if not text:
        raise CharlmError("the text to evaluate is empty")
    started = time.perf_counter()
    ids, logp = text_logprobs(lm, text, settings)
    figures = text_figures(lm, text, ids, logp)
    seconds = time.perf_counter() - started
    streams = plan_streams(len(ids), settings)
    return {
        **figures,
        "streams": streams,
        "window": pass_window(streams, lm.tokenizer.vocab_size, settings),
        "warmup": settings.warmup,
        "seconds": seconds,
        "tokens_per_s": figures["tokens"] / seconds if seconds else 0.0,
    }


def text_figures(lm, text: str, ids, logp) -> dict:
    """The figures of ``text`` from the log-probability of each of its tokens ``ids``, as
    :func:`text_logprobs` gives them (NaN: not scored).

    Returns ``loss`` (nats per token), ``perplexity`` (per token), ``bits_per_char``
    and ``bits_per_byte`` (total bits over the characters and UTF-8 bytes of the
    scored text), ``tokens``, ``chars``, ``bytes``, ``words`` (whitespace words plus
    line breaks, as a word model counts them), ``word_perplexity`` (exp of the total
    loss per word, comparable across char, byte and word models), ``unknown`` and
    ``oov_rate`` (tokens outside the vocabulary) and ``tokenizer``.
    """
    scored = ~np.isnan(logp)
    tokens = int(scored.sum())
    if tokens == 0:
        raise CharlmError("the text is a single token and the model has no line-break context to predict it from")
    nats = float(-logp[scored].sum())
    chars, nbytes, words = _counts(lm.tokenizer, text, first_unscored=not scored[0])
    unk = lm.tokenizer.unk_id
    unknown = int(np.count_nonzero(ids[scored] == unk)) if unk is not None else 0
    loss = nats / tokens
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        "bits_per_char": nats / math.log(2) / chars if chars else None,
        "bits_per_byte": nats / math.log(2) / nbytes if nbytes else None,
        "tokens": tokens,
        "chars": chars,
        "bytes": nbytes,
        "words": words,
        "word_perplexity": math.exp(min(nats / words, 700.0)) if words else None,
        "unknown": unknown,
        "oov_rate": unknown / tokens,
        "tokenizer": lm.tokenizer.kind,
    }


def _counts(tokenizer, text: str, first_unscored: bool) -> tuple[int, int, int]:
    """Characters, UTF-8 bytes and words of the text that was scored: all of it,
    or all but the first token's text when that token had no context."""
    chars, nbytes = len(text), len(text.encode("utf-8", "surrogatepass"))
    words = len(text.split()) + text.count("\n")
    if first_unscored:
        if tokenizer.kind == "byte":
            chars, nbytes = chars - 1, nbytes - 1
        elif tokenizer.kind == "word":
            first = text.split()[0] if text.split() else "\n"
            chars, nbytes, words = chars - len(first), nbytes - len(first.encode("utf-8", "surrogatepass")), words - 1
        else:
            norm = getattr(tokenizer, "normalization", None)
            first = (unicodedata.normalize(norm, text) if norm else text)[0]
            chars, nbytes = chars - 1, nbytes - len(first.encode("utf-8", "surrogatepass"))
    return chars, nbytes, words


def token_label(tokenizer, token_id: int) -> str:
    """A token as one readable TSV field: the character, byte or word, with line breaks,
    tabs and backslashes escaped; a non-ASCII byte as its vocabulary symbol (``<0xE2>``)."""
    token_id = int(token_id)
    if tokenizer.kind == "byte":
        value = token_id - 1
        text = chr(value) if 0x20 <= value < 0x7F or value in (0x09, 0x0A, 0x0D) else tokenizer.vocabulary[token_id]
    else:
        text = tokenizer.vocabulary[token_id]
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")

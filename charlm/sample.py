"""Sampling text from a trained model, with the whole generation loop in compiled TensorFlow.

How a sample is made:

1. The prompt is encoded by the model's tokenizer (characters it never saw become the unknown
   symbol) and consumed in one compiled pass (:meth:`Sampler.prime`): a ``tf.while_loop``
   over the prompt tokens, 512 per call, carrying the recurrent states. No prompt: fresh
   (zero) states, and the first token is drawn uniformly from the ordinary symbols.
2. The states of the one primed stream are copied to ``num_samples`` rows, and the tokens are
   drawn by :meth:`Sampler.chunk_fn`'s loop: one XLA-compiled ``tf.while_loop`` that, per step, picks a
   token from the last logits and advances the recurrent stack one step. It returns after
   ``chunk`` tokens (256) so that one sample can be streamed and stop strings checked
   between calls; the states and logits carry over to the next call.

The loop does not call the Keras model per step: :class:`Sampler` reads the weights of the
model's layers once and runs each layer's step with the kernels' cell arithmetic
(:func:`charlm.nn.kernels.cell_step`), with the embedding folded into the first layer's input
projection, a (V, gates·H) table looked up per token. ``tests/test_sample.py`` checks it against the
Keras model's logits. The batch size is whatever ``num_samples`` asks for; nothing of the
training batch size is used.

Randomness is stateless: the noise of the chunk that starts at step t comes from the seed pair
(seed, t), drawn for the whole chunk before its loop runs (:func:`gumbel_noise`), so the same
model, prompt, settings and seed give the same tokens, whether the sample is streamed or not.

Token choice follows keras-hub's samplers: the padding and unknown symbols are removed,
logits are divided by the temperature, then ``top_k`` keeps the k most likely tokens and
``top_p`` the smallest set of most likely tokens whose probabilities (softmax over all
ordinary tokens) reach p, always at least one; ``greedy`` takes the arg max.

Stop strings: a sample ends at the first occurrence of any stop string in its generated text
(never in the prompt); the stop string itself is not part of the returned text.
"""

from __future__ import annotations

import codecs
import dataclasses
import functools
import secrets
import time
import weakref
from dataclasses import dataclass

import numpy as np

from charlm.config import SampleConfig
from charlm.errors import CharlmError
from charlm.nn.kernels import cell_step
from charlm.nn.model import output_weights
from charlm.runtime import import_keras

import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

CHUNK = 256  # tokens per compiled generation call (streaming granularity)
PRIME_CHUNK = 512  # prompt tokens per compiled priming call
_SEED_MOD = 2**63




@dataclass
class Sample:
    """One generated sample.

    Attributes:
        prompt: the prompt as given.
        text: the generated continuation (``prompt + text`` is the whole output; for word
            models it starts with the space that joins it to the prompt).
        tokens: how many tokens were generated (up to and including a stop string).
        seconds: wall time of the whole call that made it (all samples of a batch share it).
        seed: the seed used; pass it again to get the same text.
        unknown_prompt_chars: prompt tokens outside the vocabulary (characters for char
            models, words for word models, always 0 for byte models).
        stopped: the stop string that ended the sample, or None.
    """

    prompt: str
    text: str
    tokens: int
    seconds: float
    seed: int
    unknown_prompt_chars: int
    stopped: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def generate(lm, prompt: str = "", on_text=None, **settings) -> list[Sample]:
    """Sample from ``lm`` (a :class:`charlm.nn.lm.LanguageModel`); see :class:`SampleConfig` for
    ``settings``. ``on_text(piece)`` (one sample only) receives the text as it is produced.
    Returns one :class:`Sample` per ``num_samples``."""
    config = SampleConfig(**settings)
    return sampler_for(lm).run(prompt, config, on_text=on_text)


_SAMPLERS = weakref.WeakKeyDictionary()


def sampler_for(lm) -> Sampler:
    """The :class:`Sampler` of ``lm``, made once (it keeps its compiled functions)."""
    if lm not in _SAMPLERS:
        _SAMPLERS[lm] = Sampler(lm)
    return _SAMPLERS[lm]


class Sampler:
    """The one-step recurrent stack of a model, and the compiled priming and generation loops.

    The weights are read from the model once. By default they are NumPy arrays, which each
    compiled loop embeds as constants: XLA then lays them out for the products at compile
    time. With ``variables=True`` they are ``tf.Variable``s instead (:attr:`variables`), which
    :meth:`refresh` re-reads from the model without recompiling (samples during training) and a
    SavedModel stores as variables (:mod:`charlm.export`).
    """

    def __init__(self, lm, variables: bool = False):
        self.lm = lm
        self.tokenizer = lm.tokenizer
        self.cell = lm.config.cell
        self.vocab_size = lm.tokenizer.vocab_size
        # Per layer a dict of float32 arrays in Keras' layout, then the output layer's (H, V), (V,).
        self.layers, self.dense_w, self.dense_b = _read_weights(lm)
        self.variables = []
        if variables:
            self.layers = [{k: tf.Variable(v, trainable=False, name=k) for k, v in layer.items()}
                           for layer in self.layers]
            self.dense_w = tf.Variable(self.dense_w, trainable=False, name="dense_w")
            self.dense_b = tf.Variable(self.dense_b, trainable=False, name="dense_b")
            self.variables = _in_order(self.layers, self.dense_w, self.dense_b)
        # Added to the logits before choosing: -inf on padding/unknown, 0 elsewhere. (V,)
        mask = np.zeros(self.vocab_size, np.float32)
        mask[lm.tokenizer.special_ids] = -np.inf
        self.mask = tf.constant(mask)
        self._prime_fn = tf.function(self._prime_loop, jit_compile=True)
        self._chunk_fns = {}

    def refresh(self):
        """Re-read the model's current weights into :attr:`variables` (``variables=True`` only)."""
        for variable, value in zip(self.variables, _in_order(*_read_weights(self.lm))):
            variable.assign(value)

    # ---- the arithmetic of one step -------------------------------------------------------

    def stepper(self):
        """``step(tokens, states) -> (top hidden state (B, H), states)``: every layer one step,
        with the kernels' cell arithmetic (:func:`charlm.nn.kernels.cell_step`). tokens (B,)
        int32; states: flat list of (B, H) ([h, c] per LSTM layer, [h] otherwise). Make it
        once per traced function, outside its loop: the cells prepare their weights when made."""
        cells = [cell_step(self.cell, weights["u"], weights.get("b_rec")) for weights in self.layers]
        k = self.lm.config.states_per_layer

        def step(tokens, states):
            new_states, x = [], None
            for index, (weights, cell) in enumerate(zip(self.layers, cells)):
                if index == 0:
                    xw = tf.gather(weights["table"], tokens)  # (B, gates*H)
                else:
                    xw = tf.matmul(x, weights["w"]) + weights["b"]
                carry, outputs = cell([xw], tuple(states[index * k : (index + 1) * k]))
                new_states.extend(carry)
                x = outputs[-1]  # the new h
            return x, new_states

        return step

    def logits_of(self, hidden):
        """Logits (B, V) from the top layer's hidden state (B, H)."""
        return tf.matmul(hidden, self.dense_w) + self.dense_b

    # ---- priming ----------------------------------------------------------------------------

    def _prime_loop(self, tokens, n, states):
        """Consume tokens[0, :n] (tokens (1, PRIME_CHUNK) int32, padded) from ``states``."""
        step = self.stepper()

        def body(t, hidden, *states):
            hidden, states = step(tokens[:, t], list(states))
            return (t + 1, hidden, *states)

        hidden = tf.zeros_like(states[0])
        _, hidden, *states = tf.while_loop(lambda t, *_: t < n, body, (tf.constant(0), hidden, *states))
        return hidden, states

    def prime(self, ids):
        """States (flat list of (1, H)) after the prompt ``ids`` (1-D int array, non-empty),
        and the logits (1, V) that predict the token after it."""
        states = self.lm.zero_states(1)
        for start in range(0, len(ids), PRIME_CHUNK):
            part = np.zeros((1, PRIME_CHUNK), np.int32)
            piece = ids[start : start + PRIME_CHUNK]
            part[0, : len(piece)] = piece
            hidden, states = self._prime_fn(tf.constant(part), tf.constant(len(piece)), states)
        return states, self.logits_of(hidden)

    # ---- generation -------------------------------------------------------------------------

    def chunk_fn(self, config: SampleConfig, batch: int, size: int = CHUNK):
        """The compiled loop ``(states, logits, noise (size, B, V), n) -> (tokens (B, size),
        states, logits)`` that draws n <= size tokens (the rest of ``tokens`` is zeros);
        ``noise`` comes from :func:`gumbel_noise`.

        It is a concrete function for ``batch`` rows, so that a call per chunk skips
        ``tf.function``'s argument matching.
        """
        key = (config.greedy, config.temperature, config.top_k, config.top_p, size, batch)
        if key in self._chunk_fns:
            return self._chunk_fns[key]
        choose = self._chooser(config)

        def loop(states, logits, noise, n):
            step = self.stepper()

            def body(t, tokens, logits, *states):
                token = choose(logits, noise[t])  # (B,)
                hidden, states = step(token, list(states))
                return (t + 1, tokens.write(t, token), self.logits_of(hidden), *states)

            tokens = tf.TensorArray(tf.int32, size=size, element_shape=logits.shape[:1])
            _, tokens, logits, *states = tf.while_loop(
                lambda t, *_: t < n, body, (tf.constant(0), tokens, logits, *states)
            )
            return tf.transpose(tokens.stack()), states, logits

        state = tf.TensorSpec([batch, self.lm.config.hidden], tf.float32)
        fn = self._chunk_fns[key] = tf.function(loop, jit_compile=True).get_concrete_function(
            [state] * len(self.lm.zero_states(1)),
            tf.TensorSpec([batch, self.vocab_size], tf.float32),  # logits
            tf.TensorSpec([size, batch, self.vocab_size], tf.float32),  # noise
            tf.TensorSpec([], tf.int32),  # n
        )
        return fn

    def _chooser(self, config: SampleConfig):
        """``choose(logits (B, V), noise (B, V)) -> tokens (B,) int32`` for the configured
        sampler; ``noise`` is standard Gumbel noise (a draw from softmax(x) is argmax(x + noise))."""
        mask, vocab = self.mask, self.vocab_size
        temperature = config.temperature or 1.0

        def choose(logits, noise):
            logits = logits + mask  # padding/unknown: -inf, never chosen
            if config.greedy:
                return tf.argmax(logits, axis=1, output_type=tf.int32)
            logits = logits / temperature
            if config.top_k is None and config.top_p is None:
                return tf.argmax(logits + noise, axis=1, output_type=tf.int32)
            # keras-hub's TopKSampler/TopPSampler: the k (or all) most likely, sorted; for top-p
            # keep each token whose predecessors' cumulative probability is below p.
            probs = tf.nn.softmax(logits)
            top, index = tf.math.top_k(probs, k=config.top_k or vocab)  # (B, k) each
            if config.top_p is not None:
                before = tf.cumsum(top, axis=1, exclusive=True)
                top = tf.where(before < config.top_p, top, tf.zeros_like(top))
            pick = tf.argmax(tf.math.log(top) + noise[:, : top.shape[1]], axis=1, output_type=tf.int32)
            return tf.gather(index, pick[:, None], batch_dims=1)[:, 0]

        return choose

    # ---- the whole job ----------------------------------------------------------------------

    def run(self, prompt: str, config: SampleConfig, on_text=None, chunk: int = CHUNK) -> list[Sample]:
        """Generate ``config.num_samples`` samples continuing ``prompt``; see :func:`generate`."""
        if config.top_k is not None and config.top_k > self.vocab_size:
            raise CharlmError(f"--top-k must be at most the vocabulary size {self.vocab_size}, got {config.top_k}")
        if on_text is not None and config.num_samples != 1:
            raise CharlmError("streaming text is possible for one sample only; use --num-samples 1 or --json")
        started = time.perf_counter()
        seed = secrets.randbelow(2**31) if config.seed is None else config.seed % _SEED_MOD
        batch = config.num_samples
        ids = self.tokenizer.encode(prompt)
        if len(ids):
            states, logits = self.prime(ids)
            states = [tf.tile(s, [batch, 1]) for s in states]
            logits = tf.tile(logits, [batch, 1])
        else:  # a fresh state; the first token is drawn uniformly from the ordinary symbols
            states, logits = self.lm.zero_states(batch), tf.zeros((batch, self.vocab_size))
        streams = [_TextStream(self.tokenizer, prompt) for _ in range(batch)]
        fn = self.chunk_fn(config, batch, chunk)
        done = 0
        while done < config.length and not all(s.stopped is not None for s in streams):
            n = min(chunk, config.length - done)
            noise = gumbel_noise((chunk, batch, self.vocab_size), tf.constant([seed, done], tf.int64))
            tokens, states, logits = fn(states, logits, noise, tf.constant(n))
            tokens = tokens.numpy()[:, :n]
            done += n
            for stream, row in zip(streams, tokens):
                stream.feed(row, config.stop, final=done >= config.length)
            if on_text is not None:
                on_text(streams[0].take_ready(config.stop, final=False))
        if on_text is not None:
            on_text(streams[0].take_ready(config.stop, final=True))
        seconds = time.perf_counter() - started
        unknown = self.tokenizer.count_unknown(prompt)
        return [
            Sample(prompt, s.text, s.tokens, round(seconds, 4), seed, unknown, s.stopped) for s in streams
        ]


class _TextStream:
    """The decoded text of one sample, fed chunk by chunk of token ids.

    Byte models decode through an incremental UTF-8 decoder, so a character split between two
    chunks is not broken; word models join words with single spaces (none after a newline),
    including the join to the prompt.
    """

    def __init__(self, tokenizer, prompt: str):
        self.tokenizer = tokenizer
        self.kind = tokenizer.kind
        self.text = ""  # generated text so far, cut at a stop string
        self.tokens = 0
        self.stopped = None
        self.shown = 0  # characters of text already handed to on_text
        self._bytes = codecs.getincrementaldecoder("utf-8")(errors="replace") if self.kind == "byte" else None
        # Word models: a generated word needs a space before it unless it starts the text or
        # follows whitespace (a prompt ending in a space or newline) or <eol>.
        self._after_word = bool(prompt) and not prompt[-1].isspace()

    def _state(self):
        return (self._bytes.getstate() if self._bytes else None, self._after_word)

    def _restore(self, state):
        if self._bytes:
            self._bytes.setstate(state[0])
        self._after_word = state[1]

    def _decode(self, ids, final: bool) -> str:
        if self.kind == "byte":
            return self._bytes.decode(bytes(int(i) - 1 for i in ids if i > 0), final)
        text = self.tokenizer.decode(ids)
        if self.kind == "word" and text:
            if self._after_word and not text.startswith("\n"):
                text = " " + text
            self._after_word = not text.endswith("\n")
        return text

    def feed(self, ids, stops, final: bool):
        """Append a chunk of generated ids (1-D); ``final``: no more will come."""
        if self.stopped is not None:
            return
        before, state = len(self.text), self._state()
        self.text += self._decode(ids, final)
        self.tokens += len(ids)
        hits = [(i, s) for s in stops if (i := self.text.find(s, max(0, before - len(s) + 1))) >= 0]
        if not hits:
            return
        at, stop = min(hits)
        # Count the tokens up to the one that completed the stop string: replay this chunk
        # one token at a time from the decoder state before it.
        self._restore(state)
        self.tokens -= len(ids)
        length = before
        for i in ids:
            length += len(self._decode([i], False))
            self.tokens += 1
            if length >= at + len(stop):
                break
        self.text, self.stopped = self.text[:at], stop

    def take_ready(self, stops, final: bool) -> str:
        """Text not yet shown that no later token can turn into the start of a stop string."""
        if final or self.stopped is not None or not stops:
            end = len(self.text)
        else:
            end = max(self.shown, len(self.text) - max(len(s) for s in stops) + 1)
        piece, self.shown = self.text[self.shown : end], end
        return piece


def gumbel_noise(shape, seed):
    """Standard Gumbel noise of ``shape`` (steps, B, V) from TensorFlow's stateless generator
    (seed: (2,) int64), for all steps of a chunk at once.

    Drawn by TensorFlow's own kernels, outside the XLA loop, on purpose: XLA's CPU expansion of
    the generator costs more per generated step than the recurrent step itself (BENCHMARKS.md).
    """
    return _gumbel_fn()(tf.constant(shape, tf.int32), seed)


@functools.cache
def _gumbel_fn():
    def draw(shape, seed):
        uniform = tf.random.stateless_uniform(shape, seed, minval=np.finfo(np.float32).tiny, maxval=1.0)
        return -tf.math.log(-tf.math.log(uniform))

    # Not XLA (see gumbel_noise); concrete, so that a call skips tf.function's argument matching.
    shape, seed = tf.TensorSpec([3], tf.int32), tf.TensorSpec([2], tf.int64)
    return tf.function(draw).get_concrete_function(shape, seed)


def _read_weights(lm):
    """The model's weights as the sampler uses them: per recurrent layer a dict of float32
    arrays (the first layer's embedding folded with its input projection into a (V, gates*H)
    ``table``, the others' ``w`` and ``b``; ``u``; a GRU's recurrent bias ``b_rec``), and the
    output layer's kernel (H, V) and bias (V,)."""
    model, cell_name = lm.model, lm.config.cell
    embedding = _numpy(model.get_layer("embedding").embeddings)  # (V, E)
    layers = []
    for index in range(lm.config.layers):
        cell = model.get_layer(f"{cell_name}_{index}").cell
        w, u, b = (_numpy(v) for v in (cell.kernel, cell.recurrent_kernel, cell.bias))
        b_in, b_rec = (b[0], b[1]) if cell_name == "gru" else (b, None)  # GRU bias: (2, 3H)
        weights = {"table": embedding @ w + b_in} if index == 0 else {"w": w, "b": b_in}
        weights["u"] = u
        if b_rec is not None:
            weights["b_rec"] = b_rec
        layers.append({k: np.asarray(v, np.float32) for k, v in weights.items()})
    kernel, bias = output_weights(model)  # (H, V), (V,)
    return layers, _numpy(kernel), _numpy(bias)


def _in_order(layers, dense_w, dense_b) -> list:
    """The sampler's weights as one list, in a fixed order."""
    return [v for layer in layers for _, v in sorted(layer.items())] + [dense_w, dense_b]


def _numpy(variable) -> np.ndarray:
    return np.asarray(variable.numpy(), dtype=np.float32)

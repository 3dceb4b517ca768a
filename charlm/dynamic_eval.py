"""Dynamic evaluation (Krause et al. 2018, "Dynamic Evaluation of Neural Sequence Models"): the
model adapts to the text it is evaluated on while it reads it, the RMS rule of their paper.

The text is read as one stream (one row), preceded by the same line break as
:mod:`charlm.evaluate`, in segments of ``segment`` tokens, the recurrent state carried from one
segment to the next. Each segment is scored first, with the weights as they are, and then every
weight takes one step on that segment's mean loss:

    θ ← θ − η · g / (MS + ε) + λ · r · (θ₀ − θ)

with g the gradient of the segment's mean loss, θ₀ the trained weights, η ``dynamic_lr`` and
λ ``dynamic_decay``. MS is each weight's root mean square gradient over ``stat_batches`` batches
of training text (:func:`gradient_statistics`: batches of :data:`STAT_ROWS` rows of ``segment``
tokens, the gradient of each batch's mean loss), and r = MS / mean(MS) its decay rate, the mean
taken over the weight tensors of each tensor's mean and r clipped at 1/λ so that the pull never
overshoots θ₀: weights that training moves a lot adapt and decay fast, the rest stay near θ₀.
This is Krause et al.'s reference implementation's rule (benkrause/dynamic-evaluation).

Only the weights in memory change, and the trained ones are put back afterwards: the model file
is never written.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from charlm.config import DynamicEvalConfig
from charlm.data.corpus import read_corpus, split_text
from charlm.errors import CharlmError
from charlm.evaluate import LOGITS_BUDGET, start_ids, text_figures
from charlm.nn.forward import make_forward
from charlm.runtime import choose_kernels, import_keras
from charlm.training.steps import token_loss

import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

# Rows of a batch of training text for the gradient statistics (charlm's training batch).
STAT_ROWS = 64
# ε of the rule: keeps the step finite for a weight whose statistics saw no gradient.
EPSILON = 2e-5


def training_text(lm, paths=(), encoding_errors: str = "strict") -> tuple[str, str]:
    """``(text, source)``: the text the gradient statistics are gathered on and where it came from.

    ``paths`` (``--train-text``) are read whole; without them, the training split of the corpus
    the model file records (the files, unchanged since training, less the validation part at
    their end), or an error that asks for ``--train-text``.
    """
    if paths:
        try:
            corpus = read_corpus(paths, encoding_errors)
        except CharlmError as error:
            raise CharlmError(f"--train-text: {error}") from None
        return corpus.text, ", ".join(corpus.files)
    recorded = lm.info.get("corpus") or {}
    files = recorded.get("files") or []
    ask = "give the training text with --train-text FILE"
    if not files:
        raise CharlmError(f"dynamic evaluation needs training text for its gradient statistics and the model "
                          f"file records no corpus; {ask}")
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise CharlmError(f"dynamic evaluation needs the model's training corpus for its gradient statistics, "
                          f"but {missing[0]} is not here; {ask}")
    corpus = read_corpus(files, encoding_errors)
    if corpus.fingerprint != recorded.get("sha256"):
        raise CharlmError(f"the model's training corpus {', '.join(files)} has changed since training "
                          f"(another sha256); {ask}")
    val_fraction = (lm.info.get("train") or {}).get("val_fraction")
    text = corpus.text
    if val_fraction:  # the part training read, without the validation text at its end
        text = split_text(text, val_fraction, on_whitespace=lm.tokenizer.kind == "word")[0]
    return text, f"{', '.join(files)} (training split)"


class DynamicEvaluator:
    """Dynamic evaluation of one :class:`charlm.nn.lm.LanguageModel` with gradient statistics
    ``ms`` (one array per trainable variable, :func:`gradient_statistics`).

    ``step(inputs, targets, states) -> (logp, new_states)``: inputs and targets (1, T) int32,
    states a list of (1, H) tensors; scores the segment with the current weights (logp (1, T),
    natural log-probabilities) and then updates the weights by the rule of the module docstring.
    ``lr`` and ``decay`` are variables, so one evaluator serves several settings; :meth:`reset`
    puts the trained weights back.
    """

    def __init__(self, lm, ms, lr: float, decay: float):
        self.lm = lm
        self.variables = list(lm.model.trainable_variables)
        if len(ms) != len(self.variables):
            raise ValueError(f"{len(ms)} gradient statistics for {len(self.variables)} variables")
        kernels = choose_kernels(lm.config, bool(tf.config.list_logical_devices("GPU")))
        self.forward = make_forward(lm.model, lm.config, kernels.charlm)
        self.trained = [tf.Variable(v, trainable=False) for v in self.variables]
        ms = [np.asarray(m, np.float32) for m in ms]
        self.inverse_ms = [tf.constant(1.0 / (m + EPSILON)) for m in ms]
        self.ms = ms
        self.lr = tf.Variable(0.0, trainable=False)
        self.decay = tf.Variable(0.0, trainable=False)
        self.rates = [tf.Variable(np.zeros_like(m), trainable=False) for m in ms]
        self.set(lr, decay)
        self.n_states = len(lm.zero_states(1))
        ids = tf.TensorSpec((1, None), tf.int32)
        states = [tf.TensorSpec((1, lm.config.hidden), tf.float32)] * self.n_states
        self._step = tf.function(self._update, input_signature=[ids, ids, states], jit_compile=kernels.xla)

    def set(self, lr: float, decay: float):
        """New η and λ; the decay rates r = MS / mean(MS), clipped at 1/λ."""
        self.lr.assign(lr)
        self.decay.assign(decay)
        for rate, r in zip(self.rates, decay_rates(self.ms, decay)):
            rate.assign(r)

    def _update(self, inputs, targets, states):
        with tf.GradientTape() as tape:
            logits, new_states = self.forward(inputs, states, False)
            nll = token_loss(targets, logits)  # (1, T)
            loss = tf.reduce_mean(nll)
        grads = tape.gradient(loss, self.variables)
        for v, g, v0, inverse_ms, rate in zip(self.variables, grads, self.trained, self.inverse_ms, self.rates):
            # θ - η g / (MS + ε) + λ r (θ0 - θ), both terms from the weights that scored the segment;
            # an embedding's gradient (IndexedSlices) as the dense matrix it stands for.
            step = -self.lr * tf.convert_to_tensor(g) * inverse_ms if g is not None else 0.0
            v.assign_add(step + self.decay * rate * (v0 - v))
        return -nll, [tf.stop_gradient(s) for s in new_states]

    def step(self, inputs, targets, states):
        logp, new_states = self._step(np.asarray(inputs, np.int32), np.asarray(targets, np.int32), list(states))
        return logp.numpy(), new_states

    def reset(self):
        """The trained weights back."""
        for v, v0 in zip(self.variables, self.trained):
            v.assign(v0)

    def logprobs(self, ids, segment: int) -> np.ndarray:
        """log p of every token of ``start + ids`` after the first (as
        :func:`charlm.evaluate.stream_logprobs` with one stream), scored dynamically in segments
        of ``segment`` tokens from the weights as they are; leaves the weights adapted."""
        seq = np.concatenate([start_ids(self.lm.tokenizer), np.asarray(ids, np.int32)])
        inputs, targets = seq[None, :-1], seq[None, 1:]  # (1, n)
        n = targets.shape[1]
        logp = np.zeros(n)
        states = self.lm.zero_states(1)
        for k in range(0, n, segment):
            chunk, states = self.step(inputs[:, k : k + segment], targets[:, k : k + segment], states)
            logp[k : k + segment] = chunk[0]
        return logp


def decay_rates(ms, decay: float) -> list[np.ndarray]:
    """r = MS / mean(MS) per weight, the mean over tensors of each tensor's mean, clipped at 1/λ
    (λ = ``decay``; unclipped for λ = 0, whose pull is nothing anyway)."""
    mean = float(np.mean([np.mean(m) for m in ms]))
    rates = [np.asarray(m, np.float32) / mean if mean > 0 else np.zeros_like(m, np.float32) for m in ms]
    return [np.minimum(r, 1.0 / decay) if decay > 0 else r for r in rates]


def gradient_statistics(lm, ids, segment: int, batches: int, rows: int = STAT_ROWS) -> tuple[list[np.ndarray], int]:
    """``(ms, batches_used)``: for each trainable variable, sqrt(mean over batches of g²), g the
    gradient of one batch's mean loss, and how many batches that took.

    The token ids are cut into ``rows`` contiguous pieces read side by side, ``segment`` tokens
    a batch, the recurrent state carried from one batch to the next: ``batches`` batches, or as
    many as the pieces hold. A batch whose logits pass :data:`charlm.evaluate.LOGITS_BUDGET`
    (a large vocabulary) runs in slices of rows whose gradients add up to the batch's.
    """
    ids = np.asarray(ids, np.int32)
    piece = len(ids) // rows
    batches = min(batches, (piece - 1) // segment)
    if batches < 1:
        raise CharlmError(f"the training text for the gradient statistics is too short: {len(ids):,} tokens, "
                          f"fewer than {rows} rows of {segment + 1}")
    pieces = ids[: rows * piece].reshape(rows, piece)
    variables = list(lm.model.trainable_variables)
    kernels = choose_kernels(lm.config, bool(tf.config.list_logical_devices("GPU")))
    forward = make_forward(lm.model, lm.config, kernels.charlm)

    def gradients(x, y, states, tokens):
        with tf.GradientTape() as tape:
            logits, new_states = forward(x, states, False)
            loss = tf.reduce_sum(token_loss(y, logits)) / tokens  # this slice's share of the batch mean
        grads = tape.gradient(loss, variables)
        return [tf.convert_to_tensor(g) for g in grads], [tf.stop_gradient(s) for s in new_states]

    compiled = tf.function(gradients, jit_compile=kernels.xla)
    per_pass = max(1, LOGITS_BUDGET // (segment * lm.tokenizer.vocab_size))
    slices = [slice(r, min(r + per_pass, rows)) for r in range(0, rows, per_pass)]
    states = [lm.zero_states(s.stop - s.start) for s in slices]
    sums = [np.zeros(v.shape, np.float64) for v in variables]
    tokens = tf.constant(float(rows * segment))
    for b in range(batches):
        x = pieces[:, b * segment : (b + 1) * segment]
        y = pieces[:, b * segment + 1 : (b + 1) * segment + 1]
        batch = [np.zeros(v.shape, np.float32) for v in variables]
        for i, s in enumerate(slices):
            grads, states[i] = compiled(x[s], y[s], states[i], tokens)
            for total, g in zip(batch, grads):
                total += g.numpy()
        for total, g in zip(sums, batch):
            total += np.square(g, dtype=np.float64)
    return [np.sqrt(total / batches).astype(np.float32) for total in sums], batches


def dynamic_evaluate(lm, text: str, train_text: str, config: DynamicEvalConfig = DynamicEvalConfig(),
                     source: str = "") -> dict:
    """The model's loss on ``text`` under dynamic evaluation, the gradient statistics gathered
    on ``train_text`` (from ``source``, for the record).

    Returns :func:`charlm.evaluate.text_figures`' figures, the settings (``lr``, ``decay``,
    ``segment``, ``epsilon``), ``statistics`` (``source``, ``batches``, ``rows``, ``tokens``, ``seconds``),
    ``seconds`` (statistics included) and ``tokens_per_s``. The trained weights are back in
    ``lm`` afterwards.
    """
    if not text:
        raise CharlmError("the text to evaluate is empty")
    started = time.perf_counter()
    ms, batches = gradient_statistics(lm, lm.tokenizer.encode(train_text), config.segment, config.stat_batches)
    statistics_seconds = time.perf_counter() - started
    evaluator = DynamicEvaluator(lm, ms, config.dynamic_lr, config.dynamic_decay)
    ids = lm.tokenizer.encode(text)
    try:
        logp = evaluator.logprobs(ids, config.segment)
    finally:
        evaluator.reset()
    if not len(start_ids(lm.tokenizer)) and len(ids):
        logp = np.concatenate([[np.nan], logp])  # the first token had no context
    figures = text_figures(lm, text, ids, logp)
    seconds = time.perf_counter() - started
    return {
        **figures,
        "lr": config.dynamic_lr,
        "decay": config.dynamic_decay,
        "segment": config.segment,
        "epsilon": EPSILON,
        "statistics": {"source": source, "batches": batches, "rows": STAT_ROWS,
                       "tokens": batches * STAT_ROWS * config.segment, "seconds": statistics_seconds},
        "seconds": seconds,
        "tokens_per_s": figures["tokens"] / seconds if seconds else 0.0,
    }

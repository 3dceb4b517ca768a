"""Moving a layer's state along a probe's direction and reading on: the intervention of
Giulianelli et al. (2018), ``charlm probe --intervene``.

For each layer, a probe for the subject's number is trained on the layer's h (and an LSTM's
c) at every word from the subject to the verb, pooled, on the training lemmas' items. Its
direction (the gradient of the probe's log-odds: a unit vector in the state's space) is the
way towards "plural". On each held-out item that names its subject, the layer's state after a
word's last token is moved along it by ``alpha`` times the state's mean norm, towards the
subject's true number (away from plural for a singular subject): after the subject only, or
after every word from the subject to the one before the verb. Everything from then on, the
layers above at that token included, reads the moved state; the item is then scored as
``charlm agree`` scores it. The control: random unit directions in place of the probe's,
moved by the same amounts.

The cost: the same pushes, as many per word as the items had (evenly spread over the words),
on held-out text, each towards the number the probe reads from the state it moves (the text
names no subjects), and the bits per character that costs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlm.agreement.scoring import MAX_ROWS, ItemScorer
from charlm.agreement.stats import wilson
from charlm.evaluate import start_ids
from charlm.inspect.logistic import Probe, fit
from charlm.inspect.positions import word_ends
from charlm.nn.kernels import cell_step, rnn_inference
from charlm.nn.model import output_logits, recurrent_layers
from charlm.runtime import import_keras

import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

ALPHAS = (0.1, 0.25, 0.5)  # push norms, as fractions of the state's mean norm
RANDOM_DIRECTIONS = 2
TEXT_ROWS = 32  # parallel pieces the held-out text is read in
WHERE = ("subject", "every_word")


class Steered:
    """The model's forward pass from zero states, with pushes added to layer ``layer``'s state
    (h, and an LSTM's c) after chosen tokens. Compiled once for batches of any shape."""

    def __init__(self, lm, layer: int):
        self.lm, self.layer = lm, layer
        config, model = lm.config, lm.model
        k = config.states_per_layer
        embedding = model.get_layer("embedding").embeddings
        rnns, output = recurrent_layers(model), output_logits(model)
        steered = rnns[layer].cell

        def zeros(batch):
            return [tf.zeros([batch, config.hidden])] * k

        def run_layers(x, layers):
            for rnn in layers:
                cell = rnn.cell
                x, _ = rnn_inference(config.cell, x, zeros(tf.shape(x)[0]), cell.kernel, cell.recurrent_kernel,
                                     cell.bias)
            return x

        @tf.function(reduce_retracing=True)
        def inputs(tokens):
            """The steered layer's input projection x·W + b_in, time major (T, B, G)."""
            x = run_layers(tf.gather(embedding, tokens), rnns[:layer])  # (B, T, E or H)
            b_in = steered.bias[0] if config.cell == "gru" else steered.bias
            return tf.transpose(tf.tensordot(x, steered.kernel, 1) + b_in, [1, 0, 2])

        @tf.function(reduce_retracing=True)
        def run(xw, targets, push, deltas, readers, follow):
            step = cell_step(config.cell, steered.recurrent_kernel, steered.bias[1] if config.cell == "gru" else None)

            def body(carry, slices):
                xw_t, push_t = slices  # (B, G), (B,)
                new, _ = step([xw_t], carry)
                moved = []
                for state, delta, (w, b) in zip(new, deltas, readers):
                    coefficient = push_t
                    if follow:  # towards the number the probe reads from the state it moves
                        coefficient = coefficient * tf.sign(tf.linalg.matvec(state, w) + b)
                    moved.append(state + coefficient[:, None] * delta[None, :])
                return tuple(moved)

            states = tf.scan(body, (xw, tf.transpose(push)), initializer=tuple(zeros(tf.shape(xw)[1])))
            x = run_layers(tf.transpose(states[0], [1, 0, 2]), rnns[layer + 1:])  # (B, T, H)
            logp = -tf.nn.sparse_softmax_cross_entropy_with_logits(targets, tf.cast(output(x), tf.float32))
            return logp, [tf.transpose(s, [1, 0, 2]) for s in states]

        self._inputs, self._run = inputs, run

    def inputs(self, tokens):
        """What the steered layer reads for ``tokens`` (B, T): pass it to :meth:`logp`."""
        return self._inputs(tf.constant(tokens, tf.int32))

    def logp(self, inputs, targets, push, deltas, readers=None, follow: bool = False):
        """``(logp (B, T), states)``: the log-probability of ``targets`` (B, T) after each
        token of :meth:`inputs`, with the steered layer's states moved by ``push[b, t] *
        deltas[j]`` after token t (``deltas``: one (H,) vector per state, h then c). With
        ``follow`` each push also takes the sign of ``x·w + b`` for the state x it moves,
        ``readers`` holding one (w, b) per state. ``states``: the layer's moved states, (B, T, H)
        each (h, then an LSTM's c)."""
        hidden = self.lm.config.hidden
        if readers is None:
            readers = [(np.zeros(hidden), 0.0)] * len(deltas)
        deltas = [tf.constant(np.asarray(d, np.float32)) for d in deltas]
        readers = [(tf.constant(np.asarray(w, np.float32)), tf.constant(np.float32(b))) for w, b in readers]
        logp, states = self._run(inputs, tf.constant(targets, tf.int32), tf.constant(push, tf.float32), deltas,
                                 readers, bool(follow))
        return logp.numpy(), [s.numpy() for s in states]


@dataclass(frozen=True)
class Pooled:
    """A probe trained on the states at every word from the subject to the verb, pooled."""

    probe: Probe
    accuracy: float  # on the held-out lemmas' items
    norm: float  # the training states' mean norm: the unit of a push


def pooled_probes(reading, test, l2) -> list:
    """Per layer, {value: :class:`Pooled`} for h (and an LSTM's c), trained on the training
    items' states at every word from the subject to the one before the verb."""
    pairs = [(k, index) for k, a in enumerate(reading.aligned) for index in a.steps]
    items = np.array([k for k, _ in pairs], dtype=np.int64)
    rows, train, y = reading.rows(pairs), ~test[items], reading.labels[items]
    out = []
    for values in reading.values:
        per_value = {}
        for value in ("h", "c"):
            if value in values:
                x = values[value][rows]
                model = fit(x[train], y[train], l2)
                per_value[value] = Pooled(model, float(np.mean(model.predict(x[~train]) == y[~train])),
                                          float(np.linalg.norm(x[train], axis=1).mean()))
        out.append(per_value)
    return out


def intervene(lm, reading, test, l2, alphas=ALPHAS, random_directions: int = RANDOM_DIRECTIONS,
              layers=None, text: str | None = None, seed: int = 0) -> dict:
    """The intervention experiment of the module docstring on ``reading``'s held-out items
    (``test``: a bool mask over its items) that name their subject, in each of ``layers``
    (0-based; default all): a JSON-ready dict."""
    probes = pooled_probes(reading, test, l2)
    items = [k for k in np.flatnonzero(test) if reading.aligned[k].steps]
    scorer = ItemScorer(lm)
    sequences = [scorer.encode(reading.aligned[k].item)[0] for k in items]
    signs = np.array([1.0 if reading.aligned[k].label else -1.0 for k in items])
    pushed = {"subject": [reading.aligned[k].steps[:1] for k in items],
              "every_word": [reading.aligned[k].steps for k in items]}
    conditions = [reading.aligned[k].item.condition or "unknown" for k in items]
    rates = _rates(reading, items)
    rng = np.random.default_rng(seed + 3)
    out = []
    for layer in range(lm.config.layers) if layers is None else layers:
        chosen = probes[layer]
        values = list(chosen)
        norms = [chosen[v].norm for v in values]
        directions = {"probe": [[chosen[v].probe.direction() * n for v, n in zip(values, norms)]],
                      "random": [[_unit(rng.normal(size=lm.config.hidden)) * n for n in norms]
                                 for _ in range(random_directions)]}
        plans = [(where, alpha, kind, d) for where in WHERE for alpha in alphas
                 for kind, sets in directions.items() for d in sets]
        steered = Steered(lm, layer)
        zero = [np.zeros(lm.config.hidden)] * len(values)
        runs = [((), 0.0, zero)] + [(pushed[where], alpha * signs, d) for where, alpha, _, d in plans]
        sums = item_logprobs(steered, sequences, runs)
        ok = sums[..., 0] > sums[..., 1]  # (plans, items); a tie loses, as in charlm agree
        cost = TextCost(lm, steered, text, [_raw_reader(chosen[v].probe) for v in values], rates) if text else None
        entries = []
        for where in WHERE:
            for alpha in alphas:
                for kind in directions:
                    at = [j + 1 for j, plan in enumerate(plans) if plan[:3] == (where, alpha, kind)]
                    entry = {"where": where, "direction": kind, "alpha": alpha,
                             **_summary(ok[at], ok[0], conditions)}
                    if cost:
                        entry["cost_bits_per_char"] = float(np.mean(
                            [cost.bits_per_char(where, alpha, plans[j - 1][3]) for j in at]) - cost.baseline)
                    entries.append(entry)
        out.append({"layer": layer + 1, "values": values,
                    "probe_accuracy": {v: chosen[v].accuracy for v in values},
                    "mean_norm": dict(zip(values, norms)),
                    "baseline": _summary(ok[:1], ok[0], conditions),
                    "conditions": entries,
                    "text": cost.describe() if cost else None})
    return {"items": len(items), "alphas": list(alphas), "random_directions": random_directions,
            "probe_trained_on": "every word from the subject to the one before the verb, pooled",
            "layers": out}


def item_logprobs(steered, sequences, plans) -> np.ndarray:
    """(len(plans), n, 2): the log-probabilities (nats) of each item's correct and wrong
    versions, read as :class:`charlm.agreement.scoring.ItemScorer` reads them (``sequences``:
    its ``encode`` pairs), under each plan ``(pushed, steps, deltas)``: item k is pushed after
    its tokens ``pushed[k]`` by ``steps[k]`` (a number or one per item) times ``deltas``."""
    flat = [(ids, start, k) for k, pair in enumerate(sequences) for ids, start in pair]
    sums = np.zeros((len(plans), len(flat)))
    order = sorted(range(len(flat)), key=lambda j: len(flat[j][0]))
    pad = steered.lm.tokenizer.pad_id
    for begin in range(0, len(order), MAX_ROWS):
        batch = order[begin : begin + MAX_ROWS]
        length = max(len(flat[j][0]) for j in batch)
        ids = np.full((len(batch), length), pad, np.int32)
        mask = np.zeros((len(batch), length - 1), bool)
        for row, j in enumerate(batch):
            seq, start, _ = flat[j]
            ids[row, : len(seq)] = seq
            mask[row, start - 1 : len(seq) - 1] = True  # logp[:, t] is that of ids[:, t + 1]
        inputs = steered.inputs(ids[:, :-1])
        for p, (pushed, steps, deltas) in enumerate(plans):
            steps = np.broadcast_to(steps, (len(sequences),))
            push = np.zeros((len(batch), length - 1), np.float32)
            for row, j in enumerate(batch):
                k = flat[j][2]
                push[row, list(pushed[k] if pushed else ())] = steps[k]
            logp, _ = steered.logp(inputs, ids[:, 1:], push, deltas)
            sums[p, batch] = np.where(mask, logp.astype(np.float64), 0.0).sum(axis=1)
    return sums.reshape(len(plans), -1, 2)


def _summary(ok, baseline, conditions) -> dict:
    """Accuracy over the items (averaged over the rows of ``ok``, one per direction), its
    change from ``baseline``, and both by the suite's condition."""
    share = ok.mean(axis=0)  # (n,) the share of directions under which each item is right
    n, correct = len(share), float(share.sum())
    out = {"accuracy": correct / n if n else None, "n": n, "ci95": wilson(correct, n),
           "change": (correct - baseline.sum()) / n if n else None}
    if len(ok) > 1:
        out["accuracies"] = [float(row.mean()) for row in ok]
    by = {}
    for name in dict.fromkeys(conditions):
        at = np.array([c == name for c in conditions])
        by[name] = {"accuracy": float(share[at].mean()), "change": float(share[at].mean() - baseline[at].mean()),
                    "n": int(at.sum())}
    out["by_condition"] = by
    return out


def _rates(reading, items) -> dict:
    """Pushes per word of the items' sentences, for each placement."""
    words = sum(len(reading.aligned[k].item.prefix.split()) + len(reading.aligned[k].item.correct.split())
                + len(reading.aligned[k].item.after.split()) for k in items)
    return {"subject": len(items) / max(1, words),
            "every_word": sum(len(reading.aligned[k].steps) for k in items) / max(1, words)}


class TextCost:
    """Bits per character of a held-out text read in ``TEXT_ROWS`` pieces from zero states,
    each after the starting context, with each placement's pushes at its ``rates`` (pushes per
    word, evenly spread over the words), each towards the number the probe reads there."""

    def __init__(self, lm, steered, text, readers, rates):
        self.steered, self.text, self.readers, self.rates = steered, text, readers, rates
        ids = lm.tokenizer.encode(text).astype(np.int32)
        self.ends = np.array(word_ends(lm.tokenizer, text), dtype=np.int64)
        self.context = start_ids(lm.tokenizer)
        self.pieces = np.array_split(np.arange(len(ids)), min(TEXT_ROWS, len(ids)))
        length = len(self.context) + max(len(p) for p in self.pieces)
        tokens = np.full((len(self.pieces), length), lm.tokenizer.pad_id, np.int32)
        self.mask = np.zeros((len(self.pieces), length - 1), bool)
        for b, piece in enumerate(self.pieces):
            seq = np.concatenate([self.context, ids[piece]])
            tokens[b, : len(seq)] = seq
            self.mask[b, max(0, len(self.context) - 1) : len(seq) - 1] = True
        self.targets, self.inputs, self.tokens = tokens[:, 1:], steered.inputs(tokens[:, :-1]), len(ids)
        self.baseline = self.bits_per_char("subject", 0.0, [np.zeros(lm.config.hidden)] * len(readers))

    def pushes(self, where) -> np.ndarray:
        """(B, T) 1 after the last token of each word pushed, else 0."""
        rate, j = self.rates[where], np.arange(len(self.ends))
        chosen = self.ends[np.floor((j + 1) * rate) > np.floor(j * rate)]
        push = np.zeros(self.targets.shape, np.float32)
        for b, piece in enumerate(self.pieces):
            at = len(self.context) + chosen[(chosen >= piece[0]) & (chosen <= piece[-1])] - piece[0]
            push[b, at[at < push.shape[1]]] = 1.0  # a push after a row's last token moves nothing read
        return push

    def bits_per_char(self, where, alpha, deltas) -> float:
        logp, _ = self.steered.logp(self.inputs, self.targets, alpha * self.pushes(where), deltas, self.readers,
                                    follow=True)
        return float(-np.where(self.mask, logp, 0.0).sum() / np.log(2) / len(self.text))

    def describe(self) -> dict:
        return {"tokens": self.tokens, "chars": len(self.text), "bits_per_char": self.baseline,
                "pushes_per_word": self.rates}


def _raw_reader(probe: Probe):
    """A probe as (w, b) on the raw state: its log-odds are x·w + b."""
    w = probe.weights / probe.scale
    return w, probe.bias - float(probe.mean @ w)


def _unit(v):
    return v / np.linalg.norm(v)

"""Diagnostic classifiers: how well the subject's number can be read, by a linear probe, from
each value inside each layer at aligned positions of agreement items (Giulianelli et al. 2018),
beside a majority baseline and a control task (Hewitt & Liang 2019).

The items are read as the agreement scorer reads them (:mod:`charlm.inspect.positions`); the
values are those of :func:`charlm.nn.kernels.rnn_trace`, many items per pass. The items are
split by subject lemma: no lemma is on both sides, so a probe cannot score by remembering
which noun is plural. For each position, layer and value an L2-regularised logistic regression
(:mod:`charlm.inspect.logistic`) is trained on one side and tested on the other.

The control task gives each lemma a random label, the same for all its items (singular and
plural forms alike), drawn with the training items' share of plurals. A probe can only get it
right by recognising the lemma, so it is trained on part of the training items and tested on
the rest of them, items of lemmas it has seen; on unseen lemmas it would be at chance by
construction. Selectivity is the probe's accuracy minus its control accuracy.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from charlm.agreement.scoring import ItemScorer
from charlm.agreement.stats import wilson
from charlm.errors import CharlmError
from charlm.evaluate import start_ids
from charlm.inspect.logistic import L2, fit
from charlm.inspect.positions import LABELS, align, at_position, position_label, position_order
from charlm.nn.kernels import TRACED, rnn_trace
from charlm.nn.model import recurrent_layers
from charlm.runtime import import_keras

import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

MIN_LEMMAS = 4  # subject lemmas a split needs, at least two on each side
MIN_ITEMS = 20  # items a split needs
TEST_FRACTION = 0.3  # of the items, on held-out lemmas
CONTROL_FRACTION = 0.2  # of the training items, held out for the control task
ROWS = 128  # items per traced pass


@dataclass
class Reading:
    """The items as the model read them.

    Attributes:
        aligned: the :class:`charlm.inspect.positions.Aligned` items.
        values: per layer, {name: (R, H) float32}: the value at each of R (item, token) rows.
        row: (item number, token index) -> row of ``values``: every position and step of each item.
        ok: (n,) bool, whether the model prefers each item's correct form (as ``charlm agree``).
        skipped: reasons, with counts, for the suite's items that are not read.
        sources: how many numbers came from the ``subj_number`` column and how many from forms.
    """

    aligned: list
    values: list
    row: dict
    ok: np.ndarray
    skipped: Counter
    sources: Counter

    def rows(self, pairs) -> np.ndarray:
        """The rows of (item number, token index) pairs."""
        return np.array([self.row[pair] for pair in pairs], dtype=np.int64)

    @property
    def labels(self) -> np.ndarray:
        return np.array([a.label for a in self.aligned], dtype=np.int64)


def read_items(lm, items, names=None) -> Reading:
    """Read every prefix item of ``items`` that the model can score, keeping ``names`` (default
    all of the cell's values) at each item's positions and steps, and score the items."""
    scorer = ItemScorer(lm)
    aligned, skipped, sources = align(items, lm.tokenizer, start_ids(lm.tokenizer))
    kept = []
    for a in aligned:
        reason = scorer.encode(a.item)[1]
        if reason:
            skipped[reason] += 1
        else:
            kept.append(a)
    if not kept:
        reasons = "; ".join(f"{n} {r}" for r, n in skipped.items()) or "no items"
        raise CharlmError(f"no agreement item can be probed: {reasons}")
    names = tuple(TRACED[lm.config.cell] if names is None else names)
    for name in names:
        if name not in TRACED[lm.config.cell]:
            raise CharlmError(f"a {lm.config.cell} layer has no {name!r}; it has {', '.join(TRACED[lm.config.cell])}")
    pairs = [(k, index) for k, a in enumerate(kept) for index in sorted({*a.positions.values(), *a.steps})]
    row = {pair: r for r, pair in enumerate(pairs)}
    values = trace_rows(lm, [a.ids for a in kept], pairs, names)
    scored, _ = scorer.score([a.item for a in kept])
    ok = np.array([s.ok for s in scored], dtype=bool)
    return Reading(kept, values, row, ok, skipped, sources)


def trace_rows(lm, sequences, pairs, names) -> list:
    """Per layer, {name: (len(pairs), H) float32}: the value after reading token ``index`` of
    ``sequences[k]`` from a zero state, for each (k, index) of ``pairs``. Sequences are read
    many at a time, right-padded: padding comes after every token kept."""
    trace = _tracer(lm, names)
    out = [{name: np.zeros((len(pairs), lm.config.hidden), np.float32) for name in names}
           for _ in range(lm.config.layers)]
    by_item = {}
    for r, (k, index) in enumerate(pairs):
        by_item.setdefault(k, []).append((r, index))
    order = sorted(by_item, key=lambda k: len(sequences[k]))
    for begin in range(0, len(order), ROWS):
        batch = order[begin : begin + ROWS]
        length = max(len(sequences[k]) for k in batch)
        ids = np.full((len(batch), length), lm.tokenizer.pad_id, np.int32)
        rows, at = [], []
        for b, k in enumerate(batch):
            ids[b, : len(sequences[k])] = sequences[k]
            for r, index in by_item[k]:
                rows.append(r)
                at.append((b, index))
        layer_values = trace(tf.constant(ids), tf.constant(np.array(at, np.int32)))
        for kept, values in zip(out, layer_values):
            for name in names:
                kept[name][rows] = values[name].numpy()
    return out


def _tracer(lm, names):
    """The compiled pass ``(tokens (B, T), at (P, 2)) -> per layer {name: (P, H)}``: the values
    at the (row, step) pairs ``at``, from zero states."""
    config, model = lm.config, lm.model
    embedding = model.get_layer("embedding").embeddings
    rnns = recurrent_layers(model)

    @tf.function(reduce_retracing=True)
    def trace(tokens, at):
        x, first_embedding = tokens, embedding
        zeros = tf.zeros([tf.shape(tokens)[0], config.hidden])
        out = []
        for rnn in rnns:
            cell = rnn.cell
            values, _ = rnn_trace(config.cell, x, [zeros] * config.states_per_layer, cell.kernel,
                                  cell.recurrent_kernel, cell.bias, embedding=first_embedding)
            first_embedding, x = None, values["h"]
            out.append({name: tf.gather_nd(values[name], at) for name in names})
        return out

    return trace


def split_by_lemma(lemmas, labels, test_fraction: float = TEST_FRACTION, seed: int = 0) -> np.ndarray:
    """(n,) bool, True for the test items: whole lemmas, drawn at random until they hold
    ``test_fraction`` of the items. One-line error where the items are too few or the split
    leaves a side without both numbers."""
    lemmas, labels = np.asarray(lemmas, dtype=object), np.asarray(labels)
    groups = sorted(set(lemmas))
    need = (f"a probe needs at least {MIN_LEMMAS} subject lemmas and {MIN_ITEMS} items, with singular "
            f"and plural subjects on both sides of a split by lemma")
    if len(groups) < MIN_LEMMAS or len(lemmas) < MIN_ITEMS:
        raise CharlmError(f"too few items to split by subject lemma: {len(lemmas)} item(s) of {len(groups)} "
                          f"lemma(s); {need}")
    test = np.zeros(len(lemmas), bool)
    for group in np.random.default_rng(seed).permutation(groups):
        if test.sum() >= test_fraction * len(lemmas) or len(groups) - len(set(lemmas[test])) <= 2:
            break
        test |= lemmas == group
    for side in (test, ~test):
        if len(set(labels[side])) < 2:
            raise CharlmError(f"the split by subject lemma leaves one side with one number only "
                              f"({len(lemmas)} items of {len(groups)} lemmas); {need}")
    return test


def control_labels(lemmas, share: float, seed: int = 0) -> np.ndarray:
    """(n,) the control task's labels: each lemma's own random label (1 with probability
    ``share``), the same for every item of that lemma."""
    groups = sorted(set(lemmas))
    drawn = np.random.default_rng(seed).random(len(groups)) < share
    label_of = dict(zip(groups, drawn.astype(np.int64)))
    return np.array([label_of[lemma] for lemma in lemmas], dtype=np.int64)


def accuracy(correct) -> dict:
    """``accuracy``, ``n`` and Wilson ``ci95`` of a bool array of right answers."""
    correct = np.asarray(correct, bool)
    n, k = len(correct), int(correct.sum())
    return {"accuracy": k / n if n else None, "n": n, "ci95": wilson(k, n)}


def probe_suite(reading: Reading, test, l2: float = L2, test_fraction: float = TEST_FRACTION,
                seed: int = 0, values=None) -> dict:
    """Every probe of the module docstring on ``reading``, tested on the items ``test`` (a bool
    mask, from :func:`split_by_lemma` with ``test_fraction`` and ``seed``): a JSON-ready dict
    with the split, each position's majority baseline, and for each position, layer and value
    (``values``; default: all that ``reading`` holds) the probe's test accuracy, control
    accuracy, selectivity, and accuracy on the items the model gets right and wrong."""
    aligned, labels = reading.aligned, reading.labels
    lemmas = [a.lemma for a in aligned]
    rng = np.random.default_rng(seed + 1)
    control = control_labels(lemmas, labels[~test].mean(), seed + 2)
    train_items = np.flatnonzero(~test)
    control_test = np.zeros(len(aligned), bool)
    control_test[rng.permutation(train_items)[: round(CONTROL_FRACTION * len(train_items))]] = True
    seen = {lemmas[k] for k in train_items if not control_test[k]}
    control_test &= np.array([lemma in seen for lemma in lemmas])  # items of lemmas the probe saw
    control_train = ~test & ~control_test

    positions, probes = [], []
    for name in position_order(aligned):
        pairs = at_position(aligned, name)
        items = np.array([k for k, _ in pairs], dtype=np.int64)
        if len(items) == 0 or len(set(labels[items[~test[items]]])) < 2 or not test[items].any():
            continue  # no item has it, or too few to train on
        rows = reading.rows(pairs)
        on_train, on_test = ~test[items], test[items]
        majority = int(np.mean(labels[items][on_train]) > 0.5)
        positions.append({"name": name, "label": position_label(name), "n_train": int(on_train.sum()),
                          "n_test": int(on_test.sum()),
                          "majority": {"label": LABELS[majority], **accuracy(labels[items][on_test] == majority)}})
        c_train, c_test = control_train[items], control_test[items]
        for layer, tables in enumerate(reading.values):
            for value, table in tables.items():
                if values is not None and value not in values:
                    continue
                x = table[rows]
                model = fit(x[on_train], labels[items][on_train], l2)
                right = model.predict(x[on_test]) == labels[items][on_test]
                entry = {"position": name, "layer": layer + 1, "value": value, **accuracy(right)}
                entry["right"] = accuracy(right[reading.ok[items][on_test]])
                entry["wrong"] = accuracy(right[~reading.ok[items][on_test]])
                entry["control"] = _control(x, control[items], c_train, c_test, l2)
                entry["selectivity"] = (entry["accuracy"] - entry["control"]["accuracy"]
                                        if entry["control"]["accuracy"] is not None else None)
                probes.append(entry)
    n_test = int(test.sum())
    no_subject = sum(1 for a in aligned if not a.steps)
    return {
        "items": len(aligned),
        "skipped": sum(reading.skipped.values()),
        "skipped_reasons": dict(reading.skipped),
        "number_from": {"subj_number column": reading.sources["column"], "verb forms": reading.sources["forms"]},
        "labels": {LABELS[0]: int((labels == 0).sum()), LABELS[1]: int((labels == 1).sum())},
        "without_subject_index": no_subject,
        "split": {"by": "subject lemma", "seed": seed, "test_fraction": test_fraction,
                  "train_items": len(aligned) - n_test, "test_items": n_test,
                  "train_lemmas": len({lemmas[k] for k in train_items}),
                  "test_lemmas": len({lemmas[k] for k in np.flatnonzero(test)}),
                  "control_train_items": int(control_train.sum()), "control_test_items": int(control_test.sum())},
        "l2": l2,
        "agreement": {"all": accuracy(reading.ok), "test": accuracy(reading.ok[test])},
        "positions": positions,
        "probes": probes,
        "best": _best(probes),
    }


def _control(x, control, train, test, l2) -> dict:
    """The control task's accuracy at one position: trained on ``train`` rows, tested on ``test``."""
    if not test.any() or len(set(control[train])) < 2:
        return {"accuracy": None, "n": int(test.sum()), "ci95": [0.0, 1.0]}
    model = fit(x[train], control[train], l2)
    return accuracy(model.predict(x[test]) == control[test])


def _best(probes) -> dict:
    """Per position, the layer and value whose probe is most accurate."""
    best = {}
    for entry in probes:
        if entry["accuracy"] is not None and (entry["position"] not in best
                                              or entry["accuracy"] > best[entry["position"]]["accuracy"]):
            best[entry["position"]] = {k: entry[k] for k in ("layer", "value", "accuracy", "selectivity")}
    return best

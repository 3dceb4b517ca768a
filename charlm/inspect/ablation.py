"""Ablating units: what an agreement suite's accuracy becomes when a unit's hidden state is
removed from everything that reads it.

Unit j of layer l is ablated by zeroing, in the model's own weights, every row that reads its h:
row j of layer l's recurrent kernel (its h at the next step), of layer l+1's input kernel (its h
at the same step, one layer up) and, for the top layer, of the output layer's kernel. The model
then computes exactly what it would with h_j forced to 0 at every step for every reader
(the tests compare both to 1e-5). The unit's own cell state still evolves, but an LSTM's c_j is
read only by h_j = o_j tanh(c_j) and by c_j's own next step, so nothing downstream sees it:
zeroing c_j as well would change no output, and no separate c ablation is offered. (A GRU's h_j
also carries itself into its own next step through z_j h_j; that path too stays inside the unit.)
Lakretz et al. (2019) zeroed a unit's recurrent and output weights but, for a first-layer unit,
not the weights of the layer above that read it; here every reader's row is zeroed.

A model whose output is tied to its embedding (``tie_weights``) has no output kernel of its own:
its logits are h·[P·]Eᵀ + b, and the row of that map that reads a top-layer h_j is a column of the
embedding E (where H == E), which the input side reads too. Ablation therefore works on an
equivalent untied copy (:func:`untied`) whose output kernel is that map, computed once; the tied
model itself, its embedding included, is never changed.

Weights are changed in place, inside :func:`scaled_units`, and restored from a copy on the way
out, so one compiled scorer (:class:`~charlm.agreement.scoring.ItemScorer`, which reads the
variables at every call) scores every ablation.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import replace

import numpy as np

from charlm.agreement.formats import describe_skips
from charlm.agreement.scoring import ItemScorer
from charlm.errors import CharlmError
from charlm.nn.lm import LanguageModel
from charlm.nn.model import build_model, is_tied, output_weights, recurrent_layers

UNKNOWN = "unknown"


def parse_unit(text: str, layers: int, hidden: int) -> tuple:
    """``"L:J"`` (layer 1-based, unit 0-based, as the other ``charlm units`` tables print them)
    as a (layer 0-based, unit) pair; a one-line error for anything else or out of range."""
    try:
        layer, unit = (int(part) for part in text.split(":"))
    except ValueError:
        raise CharlmError(f"--unit takes LAYER:UNIT (e.g. 2:17), got {text!r}") from None
    if not 1 <= layer <= layers:
        raise CharlmError(f"--unit {text}: layer {layer} does not exist; the model has layers 1 to {layers}")
    if not 0 <= unit < hidden:
        raise CharlmError(f"--unit {text}: unit {unit} does not exist; a layer has units 0 to {hidden - 1}")
    return layer - 1, unit


def untied(lm) -> LanguageModel:
    """``lm`` itself if its output layer is a Dense layer of its own, else (a tied model) an
    equivalent untied copy: the same tokenizer, and settings with ``tie_weights`` False, every
    layer's weights copied, and the Dense output layer given the tied output map
    (:func:`charlm.nn.model.output_weights`: kernel [P·]Eᵀ (H, V), bias b), so that its logits
    are the tied model's."""
    if not is_tied(lm.model):
        return lm
    config = replace(lm.config, tie_weights=False)
    model = build_model(config, lm.tokenizer.vocab_size)
    kernel, bias = output_weights(lm.model)  # (H, V), (V,)
    for layer in model.layers:
        if layer.name == "logits":
            layer.set_weights([kernel.numpy(), bias.numpy()])
        elif layer.weights:
            layer.set_weights(lm.model.get_layer(layer.name).get_weights())
    return LanguageModel(model, lm.tokenizer, config, lm.info)


def outgoing_rows(lm, units) -> list:
    """The weights that read the h of ``units`` ((layer 0-based, unit) pairs): a list of
    (variable, sorted row indices), each variable once. ``lm`` must not be tied (see :func:`untied`)."""
    if is_tied(lm.model):
        raise ValueError("a tied model's output rows are its embedding's: ablate untied(lm) instead")
    rnns = recurrent_layers(lm.model)
    if len(rnns) != lm.config.layers:
        raise CharlmError(f"the model has {len(rnns)} recurrent layer(s) where its settings say {lm.config.layers}")
    rows = {}
    for layer, unit in units:
        if not (0 <= layer < len(rnns) and 0 <= unit < lm.config.hidden):
            raise CharlmError(f"unit {layer + 1}:{unit} does not exist: the model has {len(rnns)} layer(s) "
                              f"of {lm.config.hidden} units")
        above = rnns[layer + 1].cell.kernel if layer + 1 < len(rnns) else lm.model.get_layer("logits").kernel
        for variable in (rnns[layer].cell.recurrent_kernel, above):
            rows.setdefault(id(variable), (variable, set()))[1].add(unit)
    return [(variable, sorted(indices)) for variable, indices in rows.values()]


@contextmanager
def scaled_units(lm, units, factor: float = 0.0):
    """Within the block, the outgoing weights of ``units`` (see :func:`outgoing_rows`) are
    multiplied by ``factor``: 0 ablates them. The weights are restored on the way out, also
    after an error."""
    rows = outgoing_rows(lm, units)
    saved = [(variable, variable.numpy()) for variable, _ in rows]
    try:
        for (variable, indices), (_, value) in zip(rows, saved):
            changed = value.copy()
            changed[indices] *= factor
            variable.assign(changed)
        yield
    finally:
        for variable, value in saved:
            variable.assign(value)


def group_name(item) -> str:
    """An item's group: condition/subject number/attractor count, e.g. ``pp_attractor/sg/1``."""
    parts = (item.condition, item.subj_number, item.n_attractors)
    return "/".join(UNKNOWN if part is None else str(part) for part in parts)


class Ablator:
    """Scores a suite's items with units ablated, one compiled scorer for all of them.

    Attributes: ``lm`` (the model ablated: :func:`untied` of the one given), ``items`` (the
    items the model can score, in order), ``skips`` (the others),
    ``groups`` (group names, see :func:`group_name`, in first-seen order), ``group_of`` (each
    item's group index), ``base`` (which items the intact model gets right), ``seconds``
    (the last scoring pass's duration)."""

    def __init__(self, lm, items, skips=()):
        self.lm = untied(lm)
        self.scorer = ItemScorer(self.lm)
        scored, skipped = self.scorer.score(items)
        self.skips = [*skips, *skipped]
        if not scored:
            raise CharlmError(f"no agreement item could be scored: {describe_skips(self.skips) or 'no items found'}")
        self.items = [s.item for s in scored]
        names = [group_name(item) for item in self.items]
        self.groups = list(dict.fromkeys(names))
        self.group_of = np.array([self.groups.index(name) for name in names])
        self.sizes = np.bincount(self.group_of, minlength=len(self.groups))
        self.base = np.array([s.ok for s in scored])
        self.seconds = 0.0

    def correct(self, units=()) -> np.ndarray:
        """(items,) bool: which items the model gets right with ``units`` ablated."""
        started = time.perf_counter()
        with scaled_units(self.lm, units):
            scored, _ = self.scorer.score(self.items)
        self.seconds = time.perf_counter() - started
        return np.array([s.ok for s in scored])

    def accuracy(self, correct) -> tuple:
        """(overall accuracy, (groups,) accuracy per group) of a :meth:`correct` result."""
        per_group = np.bincount(self.group_of, weights=correct, minlength=len(self.groups)) / self.sizes
        return float(np.mean(correct)), per_group

"""Unit ablation: zeroing a unit's outgoing rows equals a NumPy forward pass that forces its h
to 0 at every step; every accuracy the study reports equals scoring a separately zeroed copy of
the model; the gradient attribution equals finite differences. Models whose output is tied to
their embedding are ablated through an untied copy with the same logits, their embedding
untouched."""

from __future__ import annotations

import numpy as np
import pytest

import charlm
from charlm.agreement.formats import Item, Loaded
from charlm.agreement.scoring import ItemScorer, run_agreement
from charlm.config import ModelConfig
from charlm.data.tokenizers import build_tokenizer
from charlm.errors import CharlmError
from charlm.inspect.ablation import Ablator, group_name, parse_unit, scaled_units, untied
from charlm.inspect.ablation_study import _spearman, ablation_study
from charlm.inspect.attribution import margin_gradients
from charlm.nn.lm import LanguageModel
from charlm.nn.model import build_model, recurrent_layers

SINGULAR = ["key", "dog", "actor", "coin", "bird", "story"]
PLURAL = ["keys", "dogs", "actors", "coins", "birds", "stories"]


def suite_items() -> list:
    """A small suite of prefix items: "the N" (simple) and "the N near the M" (pp, with one
    attractor when M's number differs), both subject numbers, subject_index 1."""
    items = []
    for k, (sg, pl) in enumerate(zip(SINGULAR, PLURAL)):
        for number, noun in (("sg", sg), ("pl", pl)):
            correct, wrong = ("is", "are") if number == "sg" else ("are", "is")
            items.append(Item("suite", len(items) + 1, correct, wrong, f"the {noun}", " here .", "simple", 0,
                              number, 1))
            for other in (SINGULAR[k - 1], PLURAL[k - 1]):
                attractors = int((other in PLURAL) != (number == "pl"))
                items.append(Item("suite", len(items) + 1, correct, wrong, f"the {noun} near the {other}", " here .",
                                  "pp", attractors, number, 1))
    return items


def random_lm(cell: str = "lstm", layers: int = 2, hidden: int = 6, scale: float = 2.0, seed: int = 5,
              embedding: int = 4, tied: bool = False):
    """An untrained model over the suite's characters with large random weights, so that its
    decisions depend on the context and ablations flip them. ``tied``: its output is its
    embedding (after a projection H -> E where ``hidden`` != ``embedding``)."""
    text = "".join(f"{item.prefix} {item.correct} {item.wrong}{item.after}\n" for item in suite_items())
    tokenizer = build_tokenizer("char", text)
    config = ModelConfig(cell=cell, layers=layers, hidden=hidden, embedding=embedding, tie_weights=tied)
    model = build_model(config, tokenizer.vocab_size)
    rng = np.random.default_rng(seed)
    for weight in model.trainable_weights:  # not a tied model's constant 1 (output_one)
        weight.assign(rng.normal(0, scale, weight.shape).astype("float32"))
    return LanguageModel(model, tokenizer, config)


class ZeroedCopy:
    """A separate model with the same weights as ``lm``, scored by its own scorer, whose rows that
    read the chosen units' h are set to 0 by hand from the layer layout (not through
    charlm.inspect.ablation)."""

    def __init__(self, lm, items):
        self.weights = lm.model.get_weights()  # [embedding, (kernel, recurrent kernel, bias) per layer, dense]
        self.layers = lm.config.layers
        model = build_model(lm.config, lm.tokenizer.vocab_size)
        self.copy = LanguageModel(model, lm.tokenizer, lm.config)
        self.loaded = Loaded(list(items), [], ["suite"])
        self.scorer = ItemScorer(self.copy)

    def scored(self, units) -> list:
        weights = [w.copy() for w in self.weights]
        for layer, unit in units:
            weights[1 + 3 * layer + 1][unit] = 0.0  # its own recurrent kernel
            above = 1 + 3 * (layer + 1) if layer + 1 < self.layers else len(weights) - 2  # next kernel, or dense
            weights[above][unit] = 0.0
        self.copy.model.set_weights(weights)
        return run_agreement(self.copy, loaded=self.loaded, scorer=self.scorer).scored


# ---- a NumPy forward pass with chosen hidden units forced to 0 ---------------------------------


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_output(model) -> tuple:
    """The output layer read by hand from the model's layers, (kernel (H, V), bias (V,)) float64:
    the Dense ``logits`` layer's, or a tied model's [P·]Eᵀ and output bias."""
    names = {layer.name for layer in model.layers}
    if "output_bias" not in names:
        kernel, bias = model.get_layer("logits").get_weights()
        return kernel.astype(np.float64), bias.astype(np.float64)
    (embedding,) = model.get_layer("embedding").get_weights()  # (V, E)
    kernel = embedding.T.astype(np.float64)
    if "projection" in names:
        kernel = model.get_layer("projection").get_weights()[0].astype(np.float64) @ kernel  # (H, E)·(E, V)
    return kernel, model.get_layer("output_bias").get_weights()[0][0].astype(np.float64)


def numpy_logits(lm, ids, forced=(), zero_c: bool = False, scale: float = 0.0) -> np.ndarray:
    """Logits (T, V) for one sequence of token ids from zero states, in float64, with h[j] of
    every (layer, j) in ``forced`` set to 0 after every step, before anything reads it (an
    LSTM's c[j] too with ``zero_c``). ``scale``: h[j] multiplied by it instead; in an LSTM or a
    SimpleRNN, whose h is read by weight rows alone, that scales the unit's outgoing rows."""
    (embedding,) = lm.model.get_layer("embedding").get_weights()
    cell, hidden = lm.config.cell, lm.config.hidden
    x = embedding.astype(np.float64)[ids]  # (T, E)
    for layer, rnn in enumerate(recurrent_layers(lm.model)):
        w, u, b = (weight.astype(np.float64) for weight in rnn.cell.get_weights())
        dead = [j for l, j in forced if l == layer]
        h, c, out = np.zeros(hidden), np.zeros(hidden), []
        for x_t in x:
            if cell == "lstm":
                z = x_t @ w + h @ u + b
                i, f, g, o = (z[k * hidden : (k + 1) * hidden] for k in range(4))
                c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
                if zero_c:
                    c[dead] *= scale
                h = _sigmoid(o) * np.tanh(c)
            elif cell == "gru":  # Keras' reset_after layout: bias (2, 3H) = [input; recurrent]
                xz, hz = x_t @ w + b[0], h @ u + b[1]
                zg = _sigmoid(xz[:hidden] + hz[:hidden])
                r = _sigmoid(xz[hidden : 2 * hidden] + hz[hidden : 2 * hidden])
                candidate = np.tanh(xz[2 * hidden:] + r * hz[2 * hidden:])
                h = zg * h + (1 - zg) * candidate
            else:
                h = np.tanh(x_t @ w + h @ u + b)
            h = h.copy()
            h[dead] *= scale
            out.append(h)
        x = np.array(out)
    kernel, bias = numpy_output(lm.model)
    return x @ kernel + bias


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_zeroed_rows_equal_a_forward_with_h_forced_to_zero(cell):
    lm = random_lm(cell, layers=3, hidden=5, scale=0.5)
    ids = lm.tokenizer.encode("\nthe dogs near the key are here .")
    before = [w.copy() for w in lm.model.get_weights()]
    for units in ([(0, 2)], [(1, 4)], [(2, 0)], [(0, 1), (0, 3), (1, 0), (2, 4)]):
        with scaled_units(lm, units):
            logits = lm.logits(ids[None, :])[0].numpy()[0]
        np.testing.assert_allclose(logits, numpy_logits(lm, ids, units), atol=1e-5)
        # Not trivially equal: the unit mattered.
        assert np.abs(logits - numpy_logits(lm, ids)).max() > 1e-3
    for weight, saved in zip(lm.model.get_weights(), before):
        np.testing.assert_array_equal(weight, saved)


def test_zeroing_an_lstm_units_c_as_well_changes_nothing():
    lm = random_lm("lstm", layers=2, hidden=5)
    ids = lm.tokenizer.encode("\nthe coins near the bird are here .")
    units = [(0, 1), (1, 3)]
    np.testing.assert_allclose(numpy_logits(lm, ids, units, zero_c=True), numpy_logits(lm, ids, units), atol=1e-12)


def test_weights_are_restored_after_an_error():
    lm = random_lm()
    before = [w.copy() for w in lm.model.get_weights()]
    with pytest.raises(RuntimeError), scaled_units(lm, [(0, 0), (1, 5)]):
        assert not np.array_equal(lm.model.get_weights()[2], before[2])  # the recurrent kernel changed
        raise RuntimeError
    for weight, saved in zip(lm.model.get_weights(), before):
        np.testing.assert_array_equal(weight, saved)


# ---- tied models: ablated through an untied copy ----------------------------------------------

TIED = [(5, 5), (6, 4)]  # (hidden, embedding): the embedding itself is the output; a projection 6 -> 4 first


def numpy_margins(lm, scorer, items, forced=(), scale: float = 0.0) -> np.ndarray:
    """(items,) log p(correct) - log p(wrong) of each item from :func:`numpy_logits` (``forced``
    units' h times ``scale``), the tokens scored being those ``scorer`` scores."""
    margins = []
    for item in items:
        (good, start), (bad, _) = scorer.encode(item)[0]
        sums = []
        for ids in (good, bad):
            logits = numpy_logits(lm, ids, forced, scale=scale)  # logits[t] predicts ids[t + 1]
            logp = logits - logits.max(axis=1, keepdims=True)
            logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
            sums.append(sum(logp[t - 1, ids[t]] for t in range(start, len(ids))))
        margins.append(sums[0] - sums[1])
    return np.array(margins)


@pytest.mark.parametrize("hidden, embedding", TIED)
def test_the_untied_copy_of_a_tied_model_has_its_logits(hidden, embedding):
    lm = random_lm(hidden=hidden, embedding=embedding, tied=True, scale=0.5)
    copy = untied(lm)
    assert not copy.config.tie_weights and "logits" in [layer.name for layer in copy.model.layers]
    assert (copy.tokenizer, copy.config.hidden, copy.config.embedding) == (lm.tokenizer, hidden, embedding)
    ids = lm.tokenizer.encode("\nthe dogs near the key are here .")
    tied_logits = lm.logits(ids[None, :])[0].numpy()[0]
    np.testing.assert_allclose(copy.logits(ids[None, :])[0].numpy()[0], tied_logits, atol=1e-5)
    np.testing.assert_allclose(tied_logits, numpy_logits(lm, ids), atol=1e-5)
    assert untied(copy) is copy  # an untied model is ablated as it is


@pytest.mark.parametrize("hidden, embedding", TIED)
def test_ablating_a_tied_model_equals_a_forward_with_h_forced_to_zero(hidden, embedding):
    lm = random_lm(hidden=hidden, embedding=embedding, tied=True, scale=0.5)
    before = [w.copy() for w in lm.model.get_weights()]
    ablator = Ablator(lm, suite_items()[:12])
    copy = ablator.lm
    ids = lm.tokenizer.encode("\nthe dogs near the key are here .")
    (embedding_weights,) = lm.model.get_layer("embedding").get_weights()
    for units in ([(0, 2)], [(1, 3)], [(1, 0), (1, hidden - 1), (0, 1)]):  # bottom, top, both
        with scaled_units(copy, units):
            logits = copy.logits(ids[None, :])[0].numpy()[0]
            margins = [s.logp_correct - s.logp_wrong for s in ablator.scorer.score(ablator.items)[0]]
            # The embedding the input reads is the tied model's, whichever unit is ablated.
            np.testing.assert_array_equal(copy.model.get_layer("embedding").get_weights()[0], embedding_weights)
        np.testing.assert_allclose(logits, numpy_logits(lm, ids, units), atol=1e-5)
        assert np.abs(logits - numpy_logits(lm, ids)).max() > 1e-3  # the unit mattered
        np.testing.assert_allclose(margins, numpy_margins(lm, ablator.scorer, ablator.items, units), atol=1e-4)
    for weight, saved in zip(lm.model.get_weights(), before):  # the tied model is never changed
        np.testing.assert_array_equal(weight, saved)
    with pytest.raises(ValueError, match="untied"), scaled_units(lm, [(1, 0)]):
        pass


@pytest.mark.parametrize("hidden, embedding", TIED)
def test_attribution_on_a_tied_model_equals_finite_differences(hidden, embedding):
    """The gradient through the tied output map against central differences of the NumPy
    forward of the tied model's own weights (h_j scaled: an LSTM's h is read by weight rows alone)."""
    lm = random_lm(hidden=hidden, embedding=embedding, tied=True, scale=0.5, seed=7)
    ablator = Ablator(lm, suite_items()[:12])
    gradients = margin_gradients(lm, ablator.scorer, ablator.items, ablator.group_of, len(ablator.groups))
    eps = 1e-4
    for unit in [(0, 2), (1, 0), (1, hidden - 1)]:
        up, down = (numpy_margins(lm, ablator.scorer, ablator.items, [unit], scale=1 + step) for step in (eps, -eps))
        expected = np.bincount(ablator.group_of, (up - down) / (2 * eps), len(ablator.groups))
        np.testing.assert_allclose(gradients[:, unit[0], unit[1]], expected, rtol=1e-3, atol=1e-4)
    assert np.abs(gradients).max() > 0.1


def test_an_ablation_study_of_a_tied_model_scores_what_the_numpy_forward_does():
    lm = random_lm(hidden=6, embedding=4, tied=True, scale=0.5, seed=7)
    items = suite_items()[:12]
    result = ablation_study(lm, items, mode="top-k", top_k=2, random_units=2, random_sets=0)
    assert result["method"]["kind"] == "attribution"
    scorer = ItemScorer(lm)
    for entry in result["units"]:
        margins = numpy_margins(lm, scorer, items, [(entry["layer"] - 1, entry["unit"])])
        assert entry["accuracy"] == pytest.approx(np.mean(margins > 0))


@pytest.mark.slow
def test_whole_layer_ablation_equals_a_copy_with_every_row_zeroed():
    lm = random_lm()
    ablator = Ablator(lm, suite_items())
    copy = ZeroedCopy(lm, ablator.items)
    for layer in range(2):
        units = [(layer, j) for j in range(lm.config.hidden)]
        expected = [s.ok for s in copy.scored(units)]
        assert ablator.correct(units).tolist() == expected
        assert expected != ablator.base.tolist()  # the layer mattered


def test_the_top_layer_ablated_chooses_by_the_output_bias_alone(lm):
    """With every top-layer unit ablated the logits are the output bias: each form's score is
    the sum of the log-softmax of the bias over its tokens, whatever the context."""
    ablator = Ablator(lm, suite_items())
    correct = ablator.correct([(1, j) for j in range(lm.config.hidden)])
    bias = lm.model.get_layer("logits").bias.numpy().astype(np.float64)
    logp = bias - np.log(np.exp(bias - bias.max()).sum()) - bias.max()
    expected = []
    for item in ablator.items:
        (good, start), (bad, _) = ablator.scorer.encode(item)[0]
        expected.append(logp[good[start:]].sum() > logp[bad[start:]].sum())
    assert correct.tolist() == expected
    accuracy, _ = ablator.accuracy(correct)
    # The suite has each verb pair equally often with either number: a context-free choice is half right.
    assert accuracy == 0.5


@pytest.mark.slow
def test_every_reported_accuracy_equals_scoring_a_zeroed_copy():
    lm = random_lm()
    items = suite_items()
    units = [(0, 1), (1, 2), (1, 4)]
    result = ablation_study(lm, items, units=units, random_units=4, random_sets=1, seed=2)
    assert result["method"]["kind"] == "given"
    intact = run_agreement(lm, loaded=Loaded(items, [], ["suite"]))
    assert result["baseline"]["accuracy"] == pytest.approx(intact.summary["accuracy"])

    copy = ZeroedCopy(lm, items)

    def outcome(chosen):
        scored = copy.scored(chosen)
        groups = {}
        for s in scored:
            groups.setdefault(group_name(s.item), []).append(s.ok)
        return np.mean([s.ok for s in scored]), {g: np.mean(v) for g, v in groups.items()}

    base_groups = {g: v["accuracy"] for g, v in result["baseline"]["groups"].items()}
    _, intact_groups = outcome([])
    assert base_groups == pytest.approx(intact_groups)
    effects = {}
    for entry in result["units"]:
        accuracy, groups = outcome([(entry["layer"] - 1, entry["unit"])])
        assert entry["accuracy"] == pytest.approx(accuracy)
        assert entry["change"] == pytest.approx(accuracy - intact.summary["accuracy"])
        for name, change in entry["groups"].items():
            assert change == pytest.approx(groups[name] - base_groups[name])
        assert entry["worst_change"] == pytest.approx(min(entry["groups"].values()))  # every group has >= 20 items
        effects[(entry["layer"], entry["unit"])] = entry["effect"]
    assert sorted(effects) == sorted((l + 1, j) for l, j in units)
    assert any(effect != 0 for effect in effects.values())  # the check is not vacuous
    # Ranked most harmful first; z and as_harmful from the null's effects, themselves scored anew.
    assert [u["effect"] for u in result["units"]] == sorted(u["effect"] for u in result["units"])
    null = []
    for layer, unit in result["null"]["units"]:
        _, groups = outcome([(layer - 1, unit)])
        null.append(min(groups[g] - base_groups[g] for g in groups))
    np.testing.assert_allclose(result["null"]["effects"], null)
    for entry in result["units"]:
        if np.std(null) > 0:
            assert entry["z"] == pytest.approx((entry["effect"] - np.mean(null)) / np.std(null))
        assert entry["as_harmful"] == pytest.approx(np.mean(np.array(null) <= entry["effect"]))
    ranked = [(u["layer"] - 1, u["unit"]) for u in result["units"]]
    cumulative = result["cumulative"]
    assert cumulative["k"] == [1, 2, 3]
    for k, top, random, drawn in zip(cumulative["k"], cumulative["top"], cumulative["random"],
                                     cumulative["random_units"]):
        assert top["accuracy"] == pytest.approx(outcome(ranked[:k])[0])
        (chosen,) = drawn  # one random set
        assert len({tuple(u) for u in chosen}) == k
        assert random == [pytest.approx(outcome([(layer - 1, unit) for layer, unit in chosen])[0])]
    for layer in result["layers_ablated"]:
        every = [(layer["layer"] - 1, j) for j in range(lm.config.hidden)]
        assert layer["accuracy"] == pytest.approx(outcome(every)[0])


@pytest.mark.slow
def test_auto_ablates_every_unit_within_the_budget_else_the_attributions_top_k():
    lm = random_lm(seed=5)
    items = suite_items()
    full = ablation_study(lm, items, random_sets=0, top_k=4)
    assert full["method"]["kind"] == "full" and "within the budget" in full["method"]["reason"]
    assert len(full["units"]) == 12 and len(full["null"]["effects"]) == 12
    ranked = ablation_study(lm, items, top_k=4, random_units=5, random_sets=0, budget_s=0.0)
    assert ranked["method"]["kind"] == "attribution" and "would take about" in ranked["method"]["reason"]
    scores = np.array(ranked["attribution"]["scores"])  # (layers, H)
    chosen = {(u["layer"] - 1, u["unit"]) for u in ranked["units"]}
    threshold = np.sort(scores.ravel())[-4]
    assert chosen == {(l, j) for l, j in zip(*np.nonzero(scores >= threshold))}
    # Each score: the largest estimated mean margin loss, dM_g/ds / n_g, over the groups (all under 20 items).
    ablator = Ablator(lm, items)
    gradients = margin_gradients(lm, ablator.scorer, ablator.items, ablator.group_of, len(ablator.groups))
    np.testing.assert_allclose(scores, (gradients / ablator.sizes[:, None, None]).max(axis=0), rtol=1e-6)
    measured = {(u["layer"] - 1, u["unit"]): u["effect"] for u in ranked["units"]}
    for (layer, unit), effect in zip(ranked["null"]["units"], ranked["null"]["effects"]):
        measured[(layer - 1, unit)] = effect
    units = sorted(measured)
    assert ranked["attribution"]["spearman"] == pytest.approx(
        _spearman([scores[u] for u in units], [-measured[u] for u in units]))
    assert len(ranked["null"]["effects"]) == 5 and ranked["null"]["kind"] == "random units"
    assert ranked["cumulative"]["k"] == [1, 2, 4]
    # The same units' effects as in the full sweep: an ablation does not depend on what else was ablated.
    by_unit = {(u["layer"], u["unit"]): u["effect"] for u in full["units"]}
    for unit in ranked["units"]:
        assert unit["effect"] == by_unit[(unit["layer"], unit["unit"])]


def derivative_at_1(margins, lm, unit, eps: float = 1e-2) -> np.ndarray:
    """d margins / d s at s = 1, s scaling ``unit``'s outgoing rows: central differences at eps
    and eps/2, Richardson-extrapolated (their O(eps^2) errors cancel)."""
    def central(step):
        sums = []
        for factor in (1 + step, 1 - step):
            with scaled_units(lm, [unit], factor):
                sums.append(margins())
        return (sums[0] - sums[1]) / (2 * step)

    return (4 * central(eps / 2) - central(eps)) / 3


def group_margins(ablator):
    """The summed margin log p(correct) - log p(wrong) of each group's items, scored now."""
    scored, _ = ablator.scorer.score(ablator.items)
    return np.bincount(ablator.group_of, [s.logp_correct - s.logp_wrong for s in scored], len(ablator.groups))


def test_attribution_equals_finite_differences(tiny_model_path):
    lm = charlm.load(tiny_model_path)  # its own copy: the weights are scaled in place
    ablator = Ablator(lm, suite_items())
    gradients = margin_gradients(lm, ablator.scorer, ablator.items, ablator.group_of, len(ablator.groups))
    for unit in [(0, 3), (0, 30), (1, 5), (1, 17)]:
        expected = derivative_at_1(lambda: group_margins(ablator), lm, unit)
        np.testing.assert_allclose(gradients[:, unit[0], unit[1]], expected, rtol=1e-3, atol=1e-3)
    assert np.abs(gradients).max() > 0.1


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_attribution_for_gru_and_simple_rnn_equals_finite_differences(cell):
    lm = random_lm(cell, scale=0.5, seed=7)
    ablator = Ablator(lm, suite_items()[:12])
    gradients = margin_gradients(lm, ablator.scorer, ablator.items, ablator.group_of, len(ablator.groups))
    for unit in [(0, 2), (1, 4)]:
        expected = derivative_at_1(lambda: group_margins(ablator), lm, unit)
        np.testing.assert_allclose(gradients[:, unit[0], unit[1]], expected, rtol=1e-3, atol=1e-3)
    assert np.abs(gradients).max() > 0.1


@pytest.mark.parametrize("text, message", [
    ("3:0", "layer 3 does not exist"),
    ("0:1", "layer 0 does not exist"),
    ("1:6", "unit 6 does not exist"),
    ("2", "LAYER:UNIT"),
    ("a:b", "LAYER:UNIT"),
])
def test_parse_unit_errors(text, message):
    with pytest.raises(CharlmError, match=message):
        parse_unit(text, layers=2, hidden=6)
    assert parse_unit("2:5", layers=2, hidden=6) == (1, 5)


def test_no_scorable_item_is_one_error():
    lm = random_lm()
    unknown = Item("suite", 1, "ĳs", "ĳz", "the dog", "", "simple", 0, "sg", 1)  # a character outside the vocabulary
    with pytest.raises(CharlmError, match="no agreement item could be scored"):
        Ablator(lm, [unknown])


def test_spearman_worked_by_hand():
    assert _spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # 1 - 6 * 2 / (4 * 15)
    # Ties share their mean rank: ranks [0.5, 0.5, 2, 3] against [0, 1, 2, 3].
    assert _spearman([5, 5, 7, 9], [1, 2, 3, 4]) == pytest.approx(np.corrcoef([0.5, 0.5, 2, 3], [0, 1, 2, 3])[0, 1])
    assert _spearman([1, 1, 1], [1, 2, 3]) is None

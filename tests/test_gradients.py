"""charlm gradients: the gradient of log p(x_t) with respect to the states k tokens back, checked
against finite differences of an independent float64 NumPy forward pass, on small untrained
models of every cell."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import BUNDLED_CORPUS, assert_one_line_error, invoke

TEXT = BUNDLED_CORPUS.read_text(encoding="utf-8")[:4000]


def tiny_lm(cell, layers=2, hidden=5, kind="char", seed=0):
    """An untrained model over the vocabulary of ``TEXT``."""
    import keras

    from charlm.config import ModelConfig
    from charlm.data.tokenizers import build_tokenizer
    from charlm.nn.lm import LanguageModel
    from charlm.nn.model import build_model

    keras.utils.set_random_seed(seed)
    tokenizer = build_tokenizer(kind, TEXT)
    config = ModelConfig(cell=cell, layers=layers, hidden=hidden, embedding=3)
    return LanguageModel(build_model(config, tokenizer.vocab_size), tokenizer, config)


# ---- an independent float64 forward pass -----------------------------------------------------


def reference_weights(lm):
    """The model's weights as float64 arrays, read from the Keras layers."""
    model = lm.model
    layers = []
    for index in range(lm.config.layers):
        cell = model.get_layer(f"{lm.config.cell}_{index}").cell
        layers.append({name: np.asarray(getattr(cell, name).numpy(), np.float64)
                       for name in ("kernel", "recurrent_kernel", "bias")})
    dense = model.get_layer("logits")
    return {"embedding": np.asarray(model.get_layer("embedding").embeddings.numpy(), np.float64),
            "layers": layers, "dense": (dense.kernel.numpy().astype(np.float64), dense.bias.numpy().astype(np.float64))}


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference_step(cell, x, state, w, delta):
    """One step of Keras' cell with default arguments, written out: x (n, D), state a dict of
    (n, H) arrays -> the new state dict, with ``delta[name]`` added to each new state as soon as
    it is computed (an LSTM's c before h = o tanh(c) reads it)."""
    h = state["h"]
    if cell == "lstm":  # gates i, f, c, o
        i, f, g, o = np.split(x @ w["kernel"] + h @ w["recurrent_kernel"] + w["bias"], 4, axis=1)
        c = sigmoid(f) * state["c"] + sigmoid(i) * np.tanh(g) + delta.get("c", 0.0)
        return {"h": sigmoid(o) * np.tanh(c) + delta.get("h", 0.0), "c": c}
    if cell == "gru":  # reset_after: bias (2, 3H) = [input; recurrent], gates z, r, h
        xz, xr, xh = np.split(x @ w["kernel"] + w["bias"][0], 3, axis=1)
        hz, hr, hh = np.split(h @ w["recurrent_kernel"] + w["bias"][1], 3, axis=1)
        z, r = sigmoid(xz + hz), sigmoid(xr + hr)
        candidate = np.tanh(xh + r * hh)
        return {"h": z * h + (1.0 - z) * candidate + delta.get("h", 0.0)}
    return {"h": np.tanh(x @ w["kernel"] + h @ w["recurrent_kernel"] + w["bias"]) + delta.get("h", 0.0)}


def reference_logp(cell, weights, tokens, target, states, deltas):
    """log p(target) after reading ``tokens`` from ``states`` (per layer a dict of (n, H)), for
    n rows at once; ``deltas[(j, layer, name)]`` (n, H) is added to that state as step j
    computes it, before anything reads it: the same step's h (an LSTM's c), the layer above and
    the next step."""
    states = [dict(s) for s in states]
    for j, token in enumerate(tokens):
        x = np.broadcast_to(weights["embedding"][token], (len(states[0]["h"]), weights["embedding"].shape[1]))
        for layer, w in enumerate(weights["layers"]):
            delta = {name: deltas[(j, layer, name)] for name in states[layer] if (j, layer, name) in deltas}
            states[layer] = new = reference_step(cell, x, states[layer], w, delta)
            x = new["h"]
    kernel, bias = weights["dense"]
    logits = x @ kernel + bias
    top = logits.max(axis=1, keepdims=True)
    return logits[:, target] - (top[:, 0] + np.log(np.exp(logits - top).sum(axis=1)))


def finite_difference_gradients(lm, tokens, target, states=None, eps=1e-6):
    """Per layer {name: (S, H)}: [k] the central-difference gradient of log p(target) with
    respect to that state after reading tokens[S-1-k], perturbing each coordinate in turn
    (all of them as rows of one float64 pass)."""
    cell, units = lm.config.cell, lm.config.hidden
    names = ("h", "c") if cell == "lstm" else ("h",)
    weights = reference_weights(lm)
    steps = len(tokens)
    keys = [(j, layer, name) for j in range(steps) for layer in range(lm.config.layers) for name in names]
    n = 2 * units * len(keys)
    deltas = {key: np.zeros((n, units)) for key in keys}
    for index, key in enumerate(keys):
        for unit in range(units):
            deltas[key][2 * (index * units + unit), unit] = eps
            deltas[key][2 * (index * units + unit) + 1, unit] = -eps
    if states is None:
        states = [{name: np.zeros(units) for name in names} for _ in range(lm.config.layers)]
    start = [{name: np.broadcast_to(np.asarray(s[name], np.float64), (n, units)) for name in names} for s in states]
    logp = reference_logp(cell, weights, tokens, target, start, deltas)
    diff = (logp[0::2] - logp[1::2]) / (2 * eps)
    out = [{name: np.zeros((steps, units)) for name in names} for _ in range(lm.config.layers)]
    for index, (j, layer, name) in enumerate(keys):
        out[layer][name][steps - 1 - j] = diff[index * units : (index + 1) * units]
    return out


def assert_close(actual, expected, rtol=2e-4):
    """Each gradient vector within ``rtol`` of the reference, relative to its own norm."""
    error = np.linalg.norm(actual - expected, axis=-1)
    scale = np.linalg.norm(expected, axis=-1)
    assert np.all(error <= rtol * scale + 1e-9), (error / np.maximum(scale, 1e-30)).max()


# ---- the gradients -----------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_state_gradients_match_finite_differences(cell):
    from charlm.inspect.gradients import state_gradients

    lm = tiny_lm(cell)
    rng = np.random.default_rng(3)
    batch, steps, k = 3, 6, lm.config.states_per_layer
    tokens = rng.integers(1, lm.tokenizer.vocab_size, (batch, steps))
    targets = rng.integers(1, lm.tokenizer.vocab_size, batch)
    states = [rng.uniform(-0.8, 0.8, (batch, lm.config.hidden)).astype(np.float32) for _ in range(lm.config.layers * k)]
    grads = state_gradients(lm, tokens, targets, states)
    names = ("h", "c") if cell == "lstm" else ("h",)
    for row in range(batch):
        row_states = [{name: states[layer * k + i][row] for i, name in enumerate(names)}
                      for layer in range(lm.config.layers)]
        expected = finite_difference_gradients(lm, tokens[row], targets[row], row_states)
        for layer in range(lm.config.layers):
            for name in names:
                got = grads[layer][name][row]
                assert got.shape == (steps, lm.config.hidden)
                assert_close(got, expected[layer][name])
                assert np.linalg.norm(got[0]) > 0  # lag 0 is never trivially zero
    # The lower layer's state at lag 0 reaches the prediction only through the layer above, at
    # the same step: the total derivative includes that path.
    assert np.linalg.norm(grads[0]["h"][:, 0], axis=1).min() > 0


def test_padded_rows_start_at_their_first_real_step():
    """Rows of one batch with different padding: each real step, whether or not other rows are
    still padding then, matches its row read without padding; padding steps have no gradient."""
    from charlm.inspect.gradients import state_gradients

    lm = tiny_lm("lstm")
    tokens = np.array([[5, 7, 9, 11], [0, 0, 4, 6], [0, 12, 13, 14]])
    targets = [3, 8, 2]
    grads = state_gradients(lm, tokens, targets, pad=[0, 2, 1])
    for row, pad in enumerate([0, 2, 1]):
        expected = finite_difference_gradients(lm, tokens[row, pad:], targets[row])
        for layer in range(2):
            for name in ("h", "c"):
                got = grads[layer][name][row]
                assert np.isnan(got[4 - pad :]).all()
                assert_close(got[: 4 - pad], expected[layer][name])


@pytest.mark.parametrize("max_lag, positions", [(40, 100), (3, 4)])
def test_the_curve_is_the_mean_over_positions_read_from_the_start(max_lag, positions):
    """From the text's start: each position's gradients by finite differences over the whole
    text read so far (after the line-break context), averaged per lag over the positions that
    reach back that far. (40, 100): every position, windows reaching back past the start;
    (3, 4): windows starting from the states found by reading the text before them."""
    from charlm.evaluate import start_ids
    from charlm.inspect.gradients import gradient_curve

    lm = tiny_lm("lstm", hidden=4)
    text = "the keys are old .\nthe key"
    result = gradient_curve(lm, text, max_lag=max_lag, positions=positions, seed=1)
    seq = np.concatenate([start_ids(lm.tokenizer), lm.tokenizer.encode(text)])
    first = len(seq) - len(text)
    assert len(result["positions"]) == min(positions, len(text))
    lags = result["lags"]
    assert lags == min(max_lag, first + max(result["positions"]) - 1)
    sums = {(layer, name): np.zeros(lags + 1) for layer in range(2) for name in ("h", "c")}
    count = np.zeros(lags + 1, int)
    for t in result["positions"]:
        s = first + t
        grads = finite_difference_gradients(lm, seq[:s], seq[s])
        reach = min(lags, s - 1) + 1
        count[:reach] += 1
        for (layer, name), total in sums.items():
            total[:reach] += np.linalg.norm(grads[layer][name][:reach], axis=1)
    assert result["curves"][0]["count"] == count.tolist()
    for curve in result["curves"]:
        expected = sums[(curve["layer"] - 1, curve["state"])] / count
        np.testing.assert_allclose(curve["norm"], expected, rtol=2e-4)
        assert curve["norm"][0] > 0


@pytest.mark.parametrize("layers", [1, 2])
def test_a_simple_rnn_without_recurrent_weights_forgets_at_once(layers):
    from charlm.inspect.gradients import gradient_curve
    from charlm.nn.model import recurrent_layers

    lm = tiny_lm("rnn", layers=layers, hidden=8)
    for rnn in recurrent_layers(lm.model):
        rnn.cell.recurrent_kernel.assign(np.zeros(rnn.cell.recurrent_kernel.shape, np.float32))
    result = gradient_curve(lm, TEXT[:600], max_lag=12, positions=16, seed=2)
    assert result["lags"] == 12 and len(result["curves"]) == layers
    for curve in result["curves"]:
        assert curve["norm"][0] > 0
        assert curve["norm"][1:] == [0.0] * 12  # exactly: nothing carries from one step to the next
        assert curve["lag_10"] == curve["lag_100"] == 1


def test_positions_are_seeded_and_lags_fall_in_order():
    from charlm.inspect.gradients import falls_to, gradient_curve

    lm = tiny_lm("gru", hidden=8)
    one = gradient_curve(lm, TEXT, max_lag=30, positions=8, seed=5)
    assert one == gradient_curve(lm, TEXT, max_lag=30, positions=8, seed=5)
    assert one["positions"] != gradient_curve(lm, TEXT, max_lag=30, positions=8, seed=6)["positions"]
    assert one["positions"] == sorted(one["positions"]) and len(set(one["positions"])) == 8
    for curve in one["curves"]:
        assert curve["lag_10"] is not None and curve["lag_10"] <= (curve["lag_100"] or 31)
    assert falls_to([2.0, 1.0, 0.2, 0.5, 0.01], 0.1) == 2
    assert falls_to([2.0, 1.0, 0.5], 0.1) is None
    assert falls_to([0.0, 0.0], 0.1) is None


# ---- the command ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """Untrained models of the three cells and tokenizers, as model files."""
    folder = tmp_path_factory.mktemp("gradients")
    paths = []
    for cell, kind in (("lstm", "char"), ("gru", "byte"), ("rnn", "word")):
        paths.append(tiny_lm(cell, hidden=8, kind=kind).save(folder / f"{cell}.keras"))
    return paths


def test_command_prints_the_curve_of_each_layer(model_files):
    result = invoke("gradients", model_files[0], "--text", TEXT[:800], "--max-lag", 60, "--positions", 8)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "k = 0 is the state the prediction of x_t is made from, after reading x_{t-1}" in out
    assert "LSTM 2x8, 8 positions of 800 tokens" in out
    header = next(line for line in out.splitlines() if "k=0" in line)
    for column in ("k=1", "k=10", "k=50", "k=60", "1/10 at", "1/100 at"):
        assert column in header
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [row[:2] for row in rows] == [["1", "h"], ["1", "c"], ["2", "h"], ["2", "c"]]


@pytest.mark.slow
def test_command_measures_several_models_as_json_and_plot(model_files, tmp_path):
    plot = tmp_path / "curves.png"
    result = invoke("gradients", *model_files, "--text", TEXT[:1500], "--max-lag", 30, "--positions", 6,
                    "--seed", 4, "--json", "--plot", plot)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["text"] == "--text" and data["max_lag"] == 30 and data["seed"] == 4
    assert [m["cell"] for m in data["models"]] == ["lstm", "gru", "rnn"]
    assert [m["model"] for m in data["models"]] == [str(p) for p in model_files]
    for model in data["models"]:
        assert len(model["positions"]) == 6 and model["lags"] == 30
        assert len(model["curves"]) == 2 * (2 if model["cell"] == "lstm" else 1)
        for curve in model["curves"]:
            assert len(curve["norm"]) == 31 and curve["norm"][0] > 0
    assert data["models"][2]["tokens"] < data["models"][0]["tokens"]  # words, not characters
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_text_shorter_than_the_lags_says_so(model_files):
    result = invoke("gradients", model_files[0], "--text", "the keys", "--max-lag", 50)
    assert result.exit_code == 0, result.stderr
    assert "lags up to 7" in result.stdout and "k=7" in result.stdout and "k=10" not in result.stdout
    assert "is reached by 1 of the 8 positions" in result.stdout


def test_bad_input_is_one_line(model_files, tmp_path):
    not_a_model = tmp_path / "notes.keras"
    not_a_model.write_text("not a model")
    assert_one_line_error(invoke("gradients", not_a_model, "--text", "the key"))
    assert_one_line_error(invoke("gradients", tmp_path / "absent.keras", "--text", "the key"))
    model = model_files[0]
    assert_one_line_error(invoke("gradients", model, "--text", ""), "empty")
    assert_one_line_error(invoke("gradients", model, "--text", "the key", "--max-lag", -1), "--max-lag", code=2)
    assert_one_line_error(invoke("gradients", model, "--text", "the key", "--positions", 0), "--positions", code=2)
    nowhere = tmp_path / "absent" / "g.png"
    assert_one_line_error(invoke("gradients", model, "--text", "the key", "--plot", nowhere), "--plot", "absent")
    assert_one_line_error(invoke("gradients", model, "--text", "the key", "--plot", tmp_path / "g.pdf"), "PNG")
    folder = tmp_path / "taken.png"
    folder.mkdir()
    assert_one_line_error(invoke("gradients", model, "--text", "the key", "--plot", folder), "--plot")
    assert_one_line_error(invoke("gradients", model, "--text", "\u2603\u2603"), "no token to measure")
    assert_one_line_error(invoke("gradients"), "MODELS", code=2)

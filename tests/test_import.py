"""charlm import (charlm.nn.importing): a PyTorch RNNModel made here, imported, computes
PyTorch's logits and states window after window; the imported file runs through eval, agree,
sample and the inspection commands; what is not an RNNModel state dict is refused in one line.

PyTorch is an optional test dependency: the tests that build a PyTorch model skip without it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import assert_one_line_error, invoke

WORDS = ["the", "<unk>", "dogs", "dog", "<eos>", "bark", "barks", "cat", "cats", "sleep", "sleeps", "near",
         "a", "house", "houses", "runs", "run", "old", ".", "of"]
UNK, EOS = WORDS.index("<unk>"), WORDS.index("<eos>")
TEXT = "the dogs near the house bark .\na cat of the houses sleeps .\nthe old dog runs\n"
ITEMS = [("the dogs near the house", "bark", "barks"), ("a cat of the houses", "sleeps", "sleep"),
         ("the old cats", "run", "runs"), ("the dog", "barks", "bark")]


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="PyTorch is an optional test dependency (pip install torch)")


def _rnn_model(torch, kind: str, tied: bool, embedding=16, hidden=16, layers=2, seed=0):
    """PyTorch's word_language_model / colorlessgreenRNNs RNNModel (without dropout), seeded, its
    weights scaled up so that the logits are far from uniform."""
    nn = torch.nn

    class RNNModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Embedding(len(WORDS), embedding)
            rnn = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN_TANH": nn.RNN}[kind]
            self.rnn = rnn(embedding, hidden, layers)
            self.decoder = nn.Linear(hidden, len(WORDS))
            if tied:
                self.decoder.weight = self.encoder.weight

        def forward(self, tokens, hidden):  # tokens (T, B): PyTorch's time-major layout
            output, hidden = self.rnn(self.encoder(tokens), hidden)
            return self.decoder(output), hidden

    torch.manual_seed(seed)
    model = RNNModel()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.mul_(2.0 if name.startswith("rnn.weight") else 1.0).add_(0.2 * torch.randn_like(p))
    return model.eval()


def _save(torch, model, folder, vocabulary=WORDS):
    state, vocab = folder / "model.pt", folder / "vocab.txt"
    torch.save(model.state_dict(), state)
    vocab.write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    return state, vocab


def _imported(torch, tmp_path, kind="LSTM", tied=False, **import_flags):
    """The PyTorch model and its import, loaded."""
    import charlm

    model = _rnn_model(torch, kind, tied)
    state, vocab = _save(torch, model, tmp_path)
    flags = [x for k, v in import_flags.items() for x in (f"--{k}", v)]
    result = invoke("import", state, vocab, "--out", tmp_path / "imported.keras", *flags)
    assert result.exit_code == 0, result.output
    return model, charlm.load(tmp_path / "imported.keras"), result.stdout


def _charlm_ids(lm, torch_ids):
    """The charlm ids of PyTorch ids (its <unk> is charlm's <unk>, its <eos> charlm's <eol>)."""
    names = {UNK: "<unk>", EOS: "<eol>"}
    return np.vectorize(lambda i: lm.tokenizer.index[names.get(int(i), WORDS[int(i)])])(torch_ids).astype(np.int32)


@pytest.mark.parametrize("kind, tied", [("LSTM", False), ("LSTM", True), ("GRU", False), ("RNN_TANH", True)])
def test_imported_model_computes_pytorchs_logits_window_after_window(torch, tmp_path, kind, tied):
    """Three windows in sequence, the states carried by each side: charlm's logits (the Keras
    model and charlm's own evaluation kernels) equal PyTorch's to 1e-5, and so do the states."""
    import tensorflow as tf

    from charlm.nn.forward import make_forward

    flags = {"cell": "rnn"} if kind == "RNN_TANH" else {}
    model, lm, out = _imported(torch, tmp_path, kind, tied, **flags)
    assert lm.config.tie_weights == tied and lm.config.layers == 2 and lm.config.hidden == 16
    assert lm.tokenizer.vocabulary[:3] == ["<pad>", "<unk>", "<eol>"] and lm.tokenizer.vocab_size == len(WORDS) + 1
    assert ("tied" if tied else "untied") + " output" in out and "added <pad>" in out
    columns = _charlm_ids(lm, np.arange(len(WORDS)))  # charlm's column of each PyTorch word
    forward = make_forward(lm.model, lm.config, charlm_kernels=True, differentiable=False)
    rng = np.random.default_rng(1)
    batch, steps = 3, 7
    hidden = None
    keras_states = kernel_states = lm.zero_states(batch)
    for window in range(3):
        ids = rng.integers(0, len(WORDS), (batch, steps))
        with torch.no_grad():
            expected, hidden = model(torch.from_numpy(ids.T.copy()), hidden)  # (T, B, V)
        expected = expected.numpy().transpose(1, 0, 2)
        tokens = tf.constant(_charlm_ids(lm, ids))
        logits, keras_states = lm.logits(tokens, keras_states)
        kernel_logits, kernel_states = forward(tokens, kernel_states, False)
        for got in (logits, kernel_logits):
            got = np.asarray(got)
            np.testing.assert_allclose(got[..., columns], expected, rtol=0, atol=1e-5, err_msg=f"window {window}")
            log_softmax = got - np.log(np.exp(got).sum(-1, keepdims=True))  # <pad>'s logit adds nothing
            want = expected - np.log(np.exp(expected).sum(-1, keepdims=True))
            np.testing.assert_allclose(log_softmax[..., columns], want, rtol=0, atol=1e-5)
        torch_states = [hidden] if kind != "LSTM" else list(hidden)  # each (layers, B, H)
        for layer in range(2):
            for k, state in enumerate(torch_states):
                want = state[layer].numpy()
                for states in (keras_states, kernel_states):
                    got = np.asarray(states[layer * len(torch_states) + k])
                    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.slow  # several commands, each compiling its own pass
def test_imported_model_runs_through_eval_agree_sample_and_inspection(torch, tmp_path):
    """eval's loss is PyTorch's mean loss on the same words (a line break read as <eos>, the
    first word predicted after one); agree decides as PyTorch's log-probabilities do."""
    model, lm, _ = _imported(torch, tmp_path, "LSTM", tied=True)
    path = tmp_path / "imported.keras"
    text = tmp_path / "text.txt"
    text.write_text(TEXT, encoding="utf-8")

    def logp(words):
        """PyTorch's log p of each word after the one before it, from <eos>."""
        ids = [EOS] + [EOS if w == "\n" else WORDS.index(w) if w in WORDS else UNK for w in words]
        with torch.no_grad():
            logits, _ = model(torch.tensor(ids)[:, None], None)
            logp = torch.log_softmax(logits[:, 0], dim=-1).numpy()
        return logp[np.arange(len(ids) - 1), ids[1:]]

    words = TEXT.replace("\n", " \n ").split(" ")
    words = [w for w in words if w]
    result = invoke("eval", path, text, "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["tokens"] == len(words) == 21
    assert figures["loss"] == pytest.approx(-logp(words).mean(), abs=1e-5)

    items = tmp_path / "items.tsv"
    items.write_text("prefix\tcorrect\twrong\n" + "".join(f"{p}\t{c}\t{w}\n" for p, c, w in ITEMS))
    result = invoke("agree", path, items, "--json")
    assert result.exit_code == 0, result.output
    decided = [logp(p.split() + [c])[-1] > logp(p.split() + [w])[-1] for p, c, w in ITEMS]
    assert json.loads(result.stdout)["correct"] == sum(decided)

    result = invoke("sample", path, "--prompt", "the dogs", "--length", "12", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("the dogs") and len(result.stdout.split()) >= 10
    for args in (["show", path, "--file", text, "--out", tmp_path / "page.html"],
                 ["gradients", path, "--file", text, "--max-lag", "3", "--positions", "4"],
                 ["units", path, "--file", text, "--saturation"],
                 ["info", path]):
        result = invoke(*args)
        assert result.exit_code == 0, (args[0], result.output)


def test_vocabulary_mapping_puts_charlms_specials_first():
    from charlm.nn.importing import charlm_vocabulary

    vocabulary, rows = charlm_vocabulary(["x", "<eos>", "y", "<unk>"], "<unk>", "<eos>")
    assert vocabulary == ["<pad>", "<unk>", "<eol>", "x", "y"]
    assert rows.tolist() == [-1, 3, 1, 0, 2]
    vocabulary, rows = charlm_vocabulary(["<pad>", "a", "UNK"], "UNK", "</s>")
    assert vocabulary == ["<pad>", "<unk>", "<eol>", "a"] and rows.tolist() == [0, 2, -1, 1]


def test_a_missing_special_is_never_predicted(torch, tmp_path):
    """A vocabulary without an end-of-sentence word: <eol> is added with a zero embedding and a
    probability of 0, and the other words keep PyTorch's log-probabilities."""
    import charlm

    words = [w for w in WORDS if w != "<eos>"] + ["eos-less"]  # as many words as the model has rows
    state, vocab = _save(torch, _rnn_model(torch, "LSTM", tied=False), tmp_path, words)
    result = invoke("import", state, vocab, "--out", tmp_path / "m.keras")
    assert result.exit_code == 0, result.output
    assert "added <pad>, <eol> (never predicted)" in result.stdout
    lm = charlm.load(tmp_path / "m.keras")
    logits, _ = lm.logits(np.array([[lm.tokenizer.index["the"], lm.tokenizer.index["dogs"]]], np.int32))
    probs = np.exp(np.asarray(logits) - np.asarray(logits).max(-1, keepdims=True))
    assert (probs[..., [lm.tokenizer.pad_id, lm.tokenizer.index["<eol>"]]] == 0).all()
    np.testing.assert_array_equal(lm.model.get_layer("embedding").embeddings.numpy()[lm.tokenizer.index["<eol>"]], 0)


# ---- bad input ----------------------------------------------------------------------------------


def test_a_pickled_model_is_refused_and_never_unpickled(torch, tmp_path):
    whole, vocab = tmp_path / "whole.pt", tmp_path / "vocab.txt"
    torch.save(torch.nn.LSTM(4, 4), whole)  # a module object, as torch.save(model, PATH) writes one
    vocab.write_text("\n".join(WORDS))
    assert_one_line_error(invoke("import", whole, vocab, "-o", tmp_path / "m.keras"), "pickled", "state_dict()")
    assert not (tmp_path / "m.keras").exists()


def test_state_dicts_of_other_models_are_refused(torch, tmp_path):
    nn = torch.nn
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(WORDS))
    out = tmp_path / "m.keras"

    def refused(state, *fragments, flags=()):
        path = tmp_path / "state.pt"
        torch.save(state, path)
        assert_one_line_error(invoke("import", path, vocab, "-o", out, *flags), *fragments)
        assert not out.exists()

    good = _rnn_model(torch, "LSTM", tied=False).state_dict()
    refused({**good, "pos_encoder.pe": torch.zeros(3)}, "not the state dict of an RNNModel")
    refused({k: v for k, v in good.items() if k != "rnn.weight_hh_l1"}, "rnn.weight_hh_l1 is missing")
    bidirectional = nn.LSTM(16, 16, 1, bidirectional=True).state_dict()
    refused({**{f"rnn.{k}": v for k, v in bidirectional.items()}, "encoder.weight": good["encoder.weight"],
             "decoder.weight": good["decoder.weight"]}, "bidirectional")
    refused({**good, "decoder.weight": torch.zeros(len(WORDS), 7)}, "decoder.weight", "(20, 16)")
    refused(good, "--cell gru conflicts", "LSTM", flags=("--cell", "gru"))
    refused(_rnn_model(torch, "RNN_TANH", tied=False).state_dict(), "plain RNN", "--cell rnn")
    refused([1, 2, 3], "holds a list, not a state dict")


def test_bad_vocabularies_and_paths_are_refused(torch, tmp_path):
    state, vocab = _save(torch, _rnn_model(torch, "LSTM", tied=False), tmp_path)
    out = tmp_path / "m.keras"
    short = tmp_path / "short.txt"
    short.write_text("\n".join(WORDS[:-1]))
    assert_one_line_error(invoke("import", state, short, "-o", out), "19 words", "20 rows")
    twice = tmp_path / "twice.txt"
    twice.write_text("\n".join(WORDS[:-1] + ["the"]))
    assert_one_line_error(invoke("import", state, twice, "-o", out), "lists 1 word(s) twice")
    both = tmp_path / "both.txt"
    both.write_text("\n".join(WORDS[:-1] + ["<eol>"]))
    assert_one_line_error(invoke("import", state, both, "-o", out), "'<eos>' and '<eol>'")
    assert_one_line_error(invoke("import", tmp_path / "absent.pt", vocab, "-o", out), "not found")
    assert_one_line_error(invoke("import", state, tmp_path / "absent.txt", "-o", out), "not found")
    assert_one_line_error(invoke("import", vocab, vocab, "-o", out), "cannot read", "as a PyTorch file")
    assert_one_line_error(invoke("import", state, vocab, "-o", tmp_path / "m.h5"), "--out must name a .keras file")
    out.write_text("keep me")
    assert_one_line_error(invoke("import", state, vocab, "-o", out), "exists", "--force")
    assert out.read_text() == "keep me"

"""The compiled training and evaluation steps (charlm.training.steps): gradient clipping on
known gradients and inside a real step, SGD steps of a word LSTM against PyTorch's, the
XLA-compiled step against the plain one, dropout,
weight-drop and embedding-dropout masks drawn outside the compiled step, several steps in one
call, validation under XLA."""

import numpy as np
import pytest

from charlm.runtime import import_keras

keras = import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

from charlm.config import ADAMW_WEIGHT_DECAY, ModelConfig, TokenizerConfig, TrainConfig  # noqa: E402
from charlm.data.prepare import prepare  # noqa: E402
from charlm.nn.forward import dropout_masks  # noqa: E402
from charlm.nn.importing import TorchRNN, keras_rnn_weights, set_weights  # noqa: E402
from charlm.nn.model import build_model  # noqa: E402
from charlm.training.steps import CompiledSteps, clip_factors, undecayed  # noqa: E402
from tests.helpers import assert_one_line_error, invoke  # noqa: E402

# ---- clip_factors on known gradients ------------------------------------------------------------

# Two gradients of norms 5 and 12 (a vector and a matrix): their global norm is 13.
GRADS = [[3.0, 4.0], [[0.0, 12.0], [0.0, 0.0]]]


def _clipped(clipnorm, mode, grads=GRADS):
    tensors = [tf.constant(g) for g in grads]
    factors, norm = clip_factors(tensors, clipnorm, mode)
    return [float(f) for f in factors], float(norm), [np.asarray(t * f) for t, f in zip(tensors, factors)]


@pytest.mark.parametrize("clipnorm,mode,factors", [
    (5.0, "global", [5 / 13, 5 / 13]),  # binding: both scaled to a joint norm of 5
    (5.0, "per-tensor", [1.0, 5 / 12]),  # the first (norm 5) is not above 5; the second is cut to 5
    (20.0, "global", [1.0, 1.0]),  # not binding
    (20.0, "per-tensor", [1.0, 1.0]),
    (13.0, "global", [1.0, 1.0]),  # exactly at the threshold: untouched
    (12.0, "per-tensor", [1.0, 1.0]),
    (None, "global", [1.0, 1.0]),  # no clipping
    (None, "per-tensor", [1.0, 1.0]),
])
def test_clip_factors_on_known_gradients(clipnorm, mode, factors):
    got, norm, clipped = _clipped(clipnorm, mode)
    assert norm == pytest.approx(13.0, rel=1e-6)  # the global norm before clipping, whatever the mode
    assert got == pytest.approx(factors, rel=1e-6)
    for g, f, c in zip(GRADS, factors, clipped):
        np.testing.assert_allclose(c, np.asarray(g) * f, rtol=1e-6)


def test_clipped_gradients_have_the_expected_norms():
    _, _, clipped = _clipped(5.0, "global")
    np.testing.assert_allclose(clipped[0], [15 / 13, 20 / 13], rtol=1e-6)
    np.testing.assert_allclose(clipped[1], [[0.0, 60 / 13], [0.0, 0.0]], rtol=1e-6)
    assert np.sqrt(sum(np.sum(c ** 2) for c in clipped)) == pytest.approx(5.0, rel=1e-6)
    _, _, clipped = _clipped(5.0, "per-tensor")
    np.testing.assert_allclose(clipped[0], [3.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(clipped[1], [[0.0, 5.0], [0.0, 0.0]], rtol=1e-6)


def test_a_sparse_gradient_counts_like_its_dense_form():
    """The embedding's gradient arrives as IndexedSlices: rows 1 and 3 of a (4, 2) table."""
    sparse = tf.IndexedSlices(tf.constant([[3.0, 4.0], [0.0, 12.0]]), tf.constant([1, 3]), tf.constant([4, 2]))
    factors, norm = clip_factors([sparse, tf.constant([0.0])], 6.5, "global")
    assert float(norm) == pytest.approx(13.0, rel=1e-6)
    assert [float(f) for f in factors] == pytest.approx([0.5, 0.5], rel=1e-6)
    factors, _ = clip_factors([sparse], 6.5, "per-tensor")
    assert float(factors[0]) == pytest.approx(0.5, rel=1e-6)


@pytest.mark.parametrize("jit", [False, True])
def test_a_sparse_gradient_with_repeated_rows_counts_like_its_dense_form(jit):
    """A token read twice in a window gives its embedding row twice: the dense gradient holds
    their sum. Rows 2, 0, 2, 2 of a (3, 2) table: dense rows [0, 1] and [3, 4] + [0, 5] + [0, 3]
    = [3, 12], norm sqrt(1 + 9 + 144) (not sqrt(25 + 1 + 25 + 9), the rows squared apart)."""
    values = tf.constant([[3.0, 4.0], [0.0, 1.0], [0.0, 5.0], [0.0, 3.0]])
    sparse = tf.IndexedSlices(values, tf.constant([2, 0, 2, 2]), tf.constant([3, 2]))
    dense = tf.convert_to_tensor(sparse)
    np.testing.assert_allclose(dense.numpy(), [[0.0, 1.0], [0.0, 0.0], [3.0, 12.0]])
    expected = float(np.linalg.norm(dense.numpy()))
    assert expected == pytest.approx(np.sqrt(154.0))

    @tf.function(jit_compile=jit)
    def norms(values, indices):
        grads = [tf.IndexedSlices(values, indices, tf.constant([3, 2])), tf.constant([0.0, 2.0])]
        (global_factor, _), norm = clip_factors(grads, 1.0, "global")
        per_tensor, _ = clip_factors(grads, 1.0, "per-tensor")
        return norm, global_factor, per_tensor[0]

    norm, global_factor, per_tensor = norms(values, tf.constant([2, 0, 2, 2]))
    assert float(norm) == pytest.approx(np.sqrt(154.0 + 4.0), rel=1e-6)
    assert float(global_factor) == pytest.approx(1 / np.sqrt(158.0), rel=1e-6)
    assert float(per_tensor) == pytest.approx(1 / expected, rel=1e-6)


# ---- clipping inside a real training step -------------------------------------------------------


@pytest.mark.parametrize("clip", ["none", "global binding", "global not binding", "per-tensor, some binding"])
@pytest.mark.parametrize("vocab", [11, 100])  # 100 > the 64 rows: the embedding is not folded
def test_a_training_step_moves_the_weights_by_the_clipped_gradient(clip, vocab):
    """With SGD a step moves every weight by -lr * factor * gradient. The gradient here is
    computed independently (a tape over the plain Keras model) and clipped by hand; the
    thresholds are chosen from its norms so that each case is what its name says."""
    config = ModelConfig(cell="gru", layers=2, hidden=16, embedding=8)
    rng = np.random.default_rng(7)
    x, y = (tf.constant(rng.integers(0, vocab, (4, 16)), tf.int32) for _ in range(2))
    keras.utils.set_random_seed(7)
    model = build_model(config, vocab)
    variables = model.trainable_variables
    before = [v.numpy() for v in variables]
    states = [tf.zeros((4, 16))] * 2
    with tf.GradientTape() as tape:
        logits = model([x, *states], training=True)[0]
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    grads = [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, variables)]
    norms = np.array([np.linalg.norm(g) for g in grads])
    total = float(np.sqrt(np.sum(norms ** 2)))
    if clip == "none":
        clipnorm, mode, factors = None, "global", np.ones(len(grads))
    elif clip == "global binding":
        clipnorm, mode = total / 2, "global"
        factors = np.full(len(grads), 0.5)
    elif clip == "global not binding":
        clipnorm, mode, factors = total * 2, "global", np.ones(len(grads))
    else:
        clipnorm, mode = float(np.median(norms)), "per-tensor"
        factors = np.minimum(1.0, clipnorm / norms)
        assert (factors < 1).any() and (factors == 1).any()
    lr = 1.0
    steps = CompiledSteps(model, config, TrainConfig(batch_size=4, bptt=16, optimizer="sgd", lr=lr, clipnorm=clipnorm,
                                                     clip_mode=mode))
    step_loss, step_norm, _ = steps.train_step(x, y, tuple(states))
    assert float(step_loss) == pytest.approx(float(loss), rel=1e-5)
    assert float(step_norm) == pytest.approx(total, rel=1e-4)  # the norm before clipping
    moves = [b - v.numpy() for b, v in zip(before, variables)]
    for move, grad, factor, v in zip(moves, grads, factors, variables):
        np.testing.assert_allclose(move, lr * factor * grad, rtol=1e-3, atol=1e-6, err_msg=v.path)
    moved = np.sqrt(sum(np.sum(m.astype(np.float64) ** 2) for m in moves))
    assert moved == pytest.approx(lr * min(total, clipnorm or total) if mode == "global"
                                  else lr * np.sqrt(np.sum((factors * norms) ** 2)), rel=1e-4)


# ---- compiled steps against the plain ones ------------------------------------------------------


def test_a_large_vocabulary_step_under_xla_equals_keras_adam_on_the_keras_model():
    """A vocabulary larger than the window's rows (the embedding read by a lookup, its gradient
    a set of rows) through the XLA-compiled step: three Adam steps, states carried, move the
    weights as Keras' Adam moves them on the plain Keras model's gradients."""
    config = ModelConfig(cell="lstm", layers=2, hidden=16, embedding=8)
    vocab, rows = 300, (4, 8)  # 300 symbols > 32 rows
    rng = np.random.default_rng(3)
    windows = [tuple(tf.constant(rng.integers(0, vocab, rows), tf.int32) for _ in range(2)) for _ in range(3)]
    keras.utils.set_random_seed(3)
    model = build_model(config, vocab)
    reference = build_model(config, vocab)
    reference.set_weights(model.get_weights())
    train_config = TrainConfig(batch_size=4, bptt=8, lr=0.01, clipnorm=None)
    trainer = CompiledSteps(model, config, train_config, jit_compile=True)
    optimizer = keras.optimizers.Adam(learning_rate=0.01)
    states, reference_states = trainer.zero_states(4), [tf.zeros((4, 16))] * 4
    for x, y in windows:
        loss, _, states = trainer.train_step(x, y, states)
        with tf.GradientTape() as tape:
            logits, *reference_states = reference([x, *reference_states], training=True)
            expected = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        optimizer.apply(tape.gradient(expected, reference.trainable_variables), reference.trainable_variables)
        assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)  # Adam's steps are about lr = 0.01


@pytest.mark.parametrize("vocab", [11, 300])  # 11: folded into the first projection; 300 > the 32 rows: a lookup
def test_sgd_steps_of_a_word_lstm_equal_pytorchs(vocab):
    """PyTorch's word_language_model loop (nn.Embedding, nn.LSTM, nn.Linear, mean cross-entropy,
    clip_grad_norm_, SGD) and charlm's compiled steps, from the same weights (charlm import's
    mapping; PyTorch's b_hh frozen, so that both have one bias vector) on the same windows, the
    states carried: three steps at rate 20 with the clipping binding give the same losses,
    gradient norms and weights. The ids repeat within a window, as words do."""
    torch = pytest.importorskip("torch", reason="the PyTorch reference needs PyTorch (CI has none)")
    batch, bptt, hidden, width, lr, clip = 4, 8, 16, 8, 20.0, 0.02
    torch.manual_seed(0)
    encoder, rnn = torch.nn.Embedding(vocab, width), torch.nn.LSTM(width, hidden, 2)
    decoder = torch.nn.Linear(hidden, vocab)
    for layer in range(2):
        getattr(rnn, f"bias_hh_l{layer}").requires_grad_(False)
    params = [p for m in (encoder, rnn, decoder) for p in m.parameters() if p.requires_grad]

    def torch_weights():
        def a(t):
            return t.detach().numpy().copy()
        layers = [tuple(a(getattr(rnn, f"{name}_l{k}")) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                  for k in range(2)]
        return TorchRNN("lstm", a(encoder.weight), layers, a(decoder.weight), a(decoder.bias))

    source = torch_weights()
    model = build_model(source.config(), vocab)
    set_weights(model, source, np.arange(vocab))
    steps = CompiledSteps(model, source.config(), TrainConfig(batch_size=batch, bptt=bptt, optimizer="sgd", lr=lr,
                                                              clipnorm=clip))
    optimizer = torch.optim.SGD(params, lr=lr)
    rng = np.random.default_rng(0)
    ranks = 1.0 / np.arange(1, vocab + 1)
    stream = rng.choice(vocab, size=(batch, 3 * bptt + 1), p=ranks / ranks.sum()).astype(np.int32)
    states, torch_states = steps.zero_states(batch), (torch.zeros(2, batch, hidden), torch.zeros(2, batch, hidden))
    for k in range(3):
        x, y = stream[:, k * bptt:(k + 1) * bptt], stream[:, k * bptt + 1:(k + 1) * bptt + 1]
        assert len(np.unique(x)) < x.size  # some token is read twice: its embedding row gets two gradients
        loss, norm, states = steps.train_step(tf.constant(x), tf.constant(y), states)
        torch_states = tuple(s.detach() for s in torch_states)
        output, torch_states = rnn(encoder(torch.from_numpy(x.T.astype(np.int64))), torch_states)  # (T, B, H)
        expected = torch.nn.functional.cross_entropy(decoder(output).reshape(-1, vocab),
                                                     torch.from_numpy(y.T.astype(np.int64)).reshape(-1))
        optimizer.zero_grad()
        expected.backward()
        expected_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
        optimizer.step()
        assert float(loss) == pytest.approx(expected.item(), rel=1e-5)
        assert float(norm) == pytest.approx(expected_norm, rel=1e-4)
        assert expected_norm > clip  # the clipping binds: the step is lr * clip long
    # Each weight's move, to within a thousandth of the largest move of its tensor.
    got_weights = model.get_weights()
    assert [w.shape for w in got_weights] == [w.shape for w in _keras_order(source)]
    for got, before, want in zip(got_weights, _keras_order(source), _keras_order(torch_weights())):
        moved = want - before
        assert np.abs(moved).max() > 0
        np.testing.assert_allclose(got - before, moved, rtol=1e-3, atol=1e-3 * np.abs(moved).max())


def _keras_order(source):
    """A PyTorch RNNModel's weights as charlm's model lists them (:func:`charlm.nn.importing.set_weights`)."""
    layers = [w for weights in source.layers for w in keras_rnn_weights(source.cell, *weights)]
    return [source.encoder, *layers, source.decoder_w.T, source.decoder_b]


@pytest.mark.slow  # trains a model for four steps, twice
def test_jit_compiled_step_matches_the_plain_step(tiny_corpus):
    """The TPU path compiles the training step with XLA; on CPU the same step must agree."""
    model_config = ModelConfig(cell="lstm", layers=2, hidden=16, embedding=8)
    train_config = TrainConfig(batch_size=4, bptt=16, clipnorm=0.5, val_fraction=0.1)
    data = prepare([tiny_corpus], TokenizerConfig(), train_config)
    keras.utils.set_random_seed(3)
    initial = build_model(model_config, data.tokenizer.vocab_size).get_weights()

    def run(jit):
        model = build_model(model_config, data.tokenizer.vocab_size)
        model.set_weights(initial)
        trainer = CompiledSteps(model, model_config, train_config, jit_compile=jit)
        states = trainer.zero_states(4)
        losses = []
        for x, y in trainer.windows(data.train, 0, 4):
            loss, _, states = trainer.train_step(x, y, states)
            losses.append(float(loss))
        return losses, model.get_weights()

    plain_losses, plain_weights = run(False)
    jit_losses, jit_weights = run(True)
    np.testing.assert_allclose(jit_losses, plain_losses, rtol=1e-5)
    for a, b in zip(plain_weights, jit_weights):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # trains a model for four steps, three times
def test_dropout_masks_drawn_outside_the_compiled_step_match_the_keras_layers(tiny_corpus):
    """With dropout the trainer draws the masks before its (XLA-compiled) step: the same masks
    the model's own Dropout layers draw from the same random state, so the losses agree with
    training the plain Keras model, compiled or not."""
    model_config = ModelConfig(cell="gru", layers=2, hidden=16, embedding=8, dropout=0.3)
    train_config = TrainConfig(batch_size=4, bptt=16, clipnorm=0.5, val_fraction=0.1)
    data = prepare([tiny_corpus], TokenizerConfig(), train_config)

    def run(fast, jit):
        keras.utils.set_random_seed(3)  # the same weights and dropout seeds in every run
        model = build_model(model_config, data.tokenizer.vocab_size)
        trainer = CompiledSteps(model, model_config, train_config, charlm_kernels=fast, jit_compile=jit)
        states = trainer.zero_states(4)
        losses = []
        for x, y in trainer.windows(data.train, 0, 4):
            loss, _, states = trainer.train_step(x, y, states)
            losses.append(float(loss))
        return losses

    keras_losses = run(fast=False, jit=False)
    plain_losses = run(fast=True, jit=False)
    jit_losses = run(fast=True, jit=True)
    np.testing.assert_allclose(plain_losses, keras_losses, rtol=1e-5)
    np.testing.assert_allclose(jit_losses, keras_losses, rtol=1e-5)

    masks = dropout_masks(build_model(model_config, data.tokenizer.vocab_size), model_config,
                          np.zeros((4, 16), dtype="int32"))
    assert [m.shape for m in masks.places] == [(4, 16, 8), (4, 16, 16), (4, 16, 16)]
    assert masks.recurrent == () and masks.tokens is None  # no weight drop, no embedding dropout
    values = np.concatenate([np.ravel(m) for m in masks.places])
    assert set(np.unique(values)) == {0.0, np.float32(1 / 0.7)}
    assert 0.2 < np.mean(values == 0) < 0.4  # about the rate dropped


@pytest.mark.slow  # trains a model for four steps, three times per case
@pytest.mark.parametrize("regularisers", [
    dict(dropout=0.2, dropout_hidden=0.4, locked_dropout=True, weight_drop=0.5, embedding_dropout=0.2),
    dict(weight_drop=0.3),  # masks with no dropout places and no token factors
])
def test_regularisers_masks_drawn_outside_the_compiled_step(regularisers, tiny_corpus):
    """Locked dropout, weight drop and embedding dropout: their masks are drawn before the
    XLA-compiled step from the model's own random state, so the compiled and the plain step give
    the same losses from the same seed; and the masks do change the losses."""
    train_config = TrainConfig(batch_size=4, bptt=16, clipnorm=0.5, val_fraction=0.1)
    data = prepare([tiny_corpus], TokenizerConfig(), train_config)

    def run(model_config, jit):
        keras.utils.set_random_seed(3)
        model = build_model(model_config, data.tokenizer.vocab_size)
        trainer = CompiledSteps(model, model_config, train_config, jit_compile=jit)
        states = trainer.zero_states(4)
        losses = []
        for x, y in trainer.windows(data.train, 0, 4):
            loss, _, states = trainer.train_step(x, y, states)
            losses.append(float(loss))
        return losses

    config = ModelConfig(cell="lstm", layers=2, hidden=16, embedding=8, **regularisers)
    plain, jit = run(config, False), run(config, True)
    np.testing.assert_allclose(jit, plain, rtol=1e-5)
    unregularised = run(ModelConfig(cell="lstm", layers=2, hidden=16, embedding=8), False)
    # An untrained model's losses move little, but without masks they would be these exactly.
    assert all(a != b for a, b in zip(plain, unregularised))


@pytest.mark.slow  # trains a model for six steps, twice
def test_several_steps_per_execution_equal_single_steps(tiny_corpus):
    model_config = ModelConfig(cell="gru", layers=1, hidden=16, embedding=8)
    train_config = TrainConfig(batch_size=4, bptt=16, val_fraction=0.1)
    data = prepare([tiny_corpus], TokenizerConfig(), train_config)
    keras.utils.set_random_seed(5)
    initial = build_model(model_config, data.tokenizer.vocab_size).get_weights()

    def trainer():
        model = build_model(model_config, data.tokenizer.vocab_size)
        model.set_weights(initial)
        return CompiledSteps(model, model_config, train_config)

    single = trainer()
    states, single_losses = single.zero_states(4), []
    for x, y in single.windows(data.train, 0, 6):
        loss, _, states = single.train_step(x, y, states)
        single_losses.append(float(loss))
    multi = trainer()
    iterator = iter(multi.windows(data.train, 0, 6))
    states = multi.zero_states(4)
    losses_a, _, states = multi.train_steps(iterator, states, 4)
    losses_b, _, states = multi.train_steps(iterator, states, 2)
    np.testing.assert_allclose(np.concatenate([losses_a, losses_b]), single_losses, rtol=1e-5)
    for a, b in zip(single.model.get_weights(), multi.model.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_validation_compiled_with_xla_matches_the_keras_model(tiny_corpus):
    """At 128 units and more the trainer's validation runs forward-only kernels under XLA."""
    model_config = ModelConfig(cell="gru", layers=1, hidden=128, embedding=8)
    train_config = TrainConfig(batch_size=4, bptt=16, val_fraction=0.05)
    data = prepare([tiny_corpus], TokenizerConfig(), train_config)
    model = build_model(model_config, data.tokenizer.vocab_size)
    compiled = CompiledSteps(model, model_config, train_config)
    assert compiled._replica_eval_fn is not compiled._replica_eval  # the XLA-compiled path
    keras_path = CompiledSteps(model, model_config, train_config, charlm_kernels=False)
    assert compiled.evaluate(data.validation) == pytest.approx(keras_path.evaluate(data.validation), rel=1e-5)


# ---- AdamW ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tie", [False, True])
def test_one_adamw_step_is_the_hand_computed_update(tie):
    """One step of --optimizer adamw: w <- w (1 - lr W) - alpha m / (sqrt(v) + eps), with
    m = (1 - b1) g, v = (1 - b2) g^2, alpha = lr sqrt(1 - b2) / (1 - b1) (Keras' Adam, eps
    1e-7) on the gradient of the plain Keras model; the decay factor on every weight matrix,
    none on the biases (the tied model's output bias is a (1, V) kernel, and stays undecayed)."""
    config = ModelConfig(cell="lstm", layers=1, hidden=16, embedding=8, tie_weights=tie)
    vocab, lr, decay = 11, 0.01, 0.5
    rng = np.random.default_rng(2)
    x, y = (tf.constant(rng.integers(0, vocab, (4, 8)), tf.int32) for _ in range(2))
    keras.utils.set_random_seed(2)
    model = build_model(config, vocab)
    variables = model.trainable_variables
    before = [v.numpy().astype(np.float64) for v in variables]
    states = [tf.zeros((4, 16))] * 2
    with tf.GradientTape() as tape:
        logits = model([x, *states], training=True)[0]
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    grads = [tf.convert_to_tensor(g).numpy().astype(np.float64) for g in tape.gradient(loss, variables)]
    steps = CompiledSteps(model, config, TrainConfig(batch_size=4, bptt=8, optimizer="adamw", lr=lr,
                                                     weight_decay=decay, clipnorm=None))
    assert {v.path for v in undecayed(model)} == {v.path for v in variables if v.path.endswith("bias")
                                                  or v.path.startswith("output_bias/")}
    steps.train_step(x, y, tuple(states))
    b1, b2, eps = 0.9, 0.999, 1e-7
    decayed = {v.path for v in variables} - {v.path for v in undecayed(model)}
    assert any("embedding" in p for p in decayed) and any("recurrent_kernel" in p for p in decayed)
    for v, w, g in zip(variables, before, grads):
        m, s = (1 - b1) * g, (1 - b2) * g ** 2
        alpha = lr * np.sqrt(1 - b2) / (1 - b1)
        factor = 1 - lr * decay if v.path in decayed else 1.0
        np.testing.assert_allclose(v.numpy(), w * factor - alpha * m / (np.sqrt(s) + eps), rtol=0, atol=1e-6,
                                   err_msg=v.path)


@pytest.mark.parametrize("flags,fragment", [
    (["--weight-decay", "0.1"], "needs --optimizer adamw (got --optimizer adam)"),
    (["--optimizer", "sgd", "--weight-decay", "0.1"], "needs --optimizer adamw (got --optimizer sgd)"),
    (["--optimizer", "adamw", "--weight-decay", "-0.1"], "--weight-decay must be 0 or more"),
    (["--optimizer", "adamw", "--weight-decay", "nan"], "--weight-decay must be 0 or more"),
    (["--optimizer", "adamw", "--lr", "0.5", "--weight-decay", "2"], "--lr times it below 1"),
])
def test_bad_weight_decay_is_one_line(flags, fragment, tiny_corpus, tmp_path):
    assert_one_line_error(invoke("train", tiny_corpus, "--out", tmp_path / "o", *flags), fragment)
    assert not (tmp_path / "o").exists()


def test_adamw_without_weight_decay_takes_the_default():
    assert TrainConfig(optimizer="adamw").weight_decay == ADAMW_WEIGHT_DECAY == 0.01
    assert TrainConfig().weight_decay is None

"""The Keras model charlm builds (charlm.nn.model): on a GPU its layers insist on cuDNN, and
its files load anywhere; tied weights; the training-only regularisers leave no trace in it."""

import pytest


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gpu_models_insist_on_cudnn_and_their_files_load_anywhere(cell, tmp_path):
    """On a GPU the layers are built with use_cudnn=True: no cuDNN (here, a CPU) fails loudly
    instead of falling back to the slow loop; the saved file has Keras' default, "auto"."""
    import tensorflow as tf

    from charlm.config import ModelConfig
    from charlm.nn.lm import LanguageModel, load
    from charlm.nn.model import build_model, recurrent_layers
    from charlm.data.tokenizers import CharTokenizer

    config = ModelConfig(cell=cell, layers=2, hidden=8, embedding=4)
    tokenizer = CharTokenizer.build("abc")
    model = build_model(config, tokenizer.vocab_size, on_gpu=True)
    assert [layer.use_cudnn for layer in recurrent_layers(model)] == [True, True]
    inputs = [tf.zeros((2, 5), tf.int32), *[tf.zeros((2, 8))] * (2 * config.states_per_layer)]
    with pytest.raises(ValueError, match="cuDNN is not supported"):
        model(inputs)
    loaded = load(LanguageModel(model, tokenizer, config).save(tmp_path / "gpu.keras"))
    assert [layer.use_cudnn for layer in recurrent_layers(loaded.model)] == ["auto", "auto"]
    assert loaded.model(inputs)[0].shape == (2, 5, tokenizer.vocab_size)


# ---- tied weights -------------------------------------------------------------------------------

VOCAB = 13


def _tied(hidden=8, embedding=8, cell="lstm", seed=5):
    """A tied model with a non-zero output bias and an embedding large enough for logits far from
    uniform."""
    import numpy as np

    from charlm.config import ModelConfig
    from charlm.nn.model import build_model
    from charlm.runtime import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(seed)
    config = ModelConfig(cell=cell, layers=2, hidden=hidden, embedding=embedding, tie_weights=True)
    model = build_model(config, VOCAB)
    model.get_layer("output_bias").kernel.assign(np.random.default_rng(seed).normal(size=(1, VOCAB)))
    embeddings = model.get_layer("embedding").embeddings
    embeddings.assign(embeddings * 20.0)
    return config, model


def _inputs(config, batch=3, steps=6, seed=0):
    """Random tokens (B, T) and random (not zero) states."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    tokens = tf.constant(rng.integers(0, VOCAB, (batch, steps)), tf.int32)
    states = [tf.constant(rng.normal(size=(batch, config.hidden)) * 0.5, tf.float32)
              for _ in range(config.layers * config.states_per_layer)]
    return tokens, states


def _numpy_logits(model, tokens, states):
    """x·[P]·Eᵀ + b in NumPy, x the top layer's output as Keras' own layers compute it."""
    import numpy as np

    from charlm.nn.model import hidden_model

    x = np.asarray(hidden_model(model)([tokens, *states])[0], np.float64)
    if any(layer.name == "projection" for layer in model.layers):
        x = x @ model.get_layer("projection").kernel.numpy()
    return x @ model.get_layer("embedding").embeddings.numpy().T + model.get_layer("output_bias").kernel.numpy()[0]


def _every_logits(model, config, tokens, states):
    """The logits by every path charlm computes them: the Keras model, charlm's training and
    evaluation kernels, and the Keras layers under charlm's output."""
    from charlm.nn.forward import make_forward

    paths = {"keras model": model([tokens, *states])[0]}
    for kernels in (True, False):
        for differentiable in (True, False):
            forward = make_forward(model, config, charlm_kernels=kernels, differentiable=differentiable)
            paths[f"kernels={kernels} differentiable={differentiable}"] = forward(tokens, states, False)[0]
    return paths


@pytest.mark.parametrize("hidden", [8, 12])  # 12: a projection 12 -> 8 before the tied output
def test_the_tied_output_matrix_is_the_embedding_variable(hidden):
    import numpy as np

    from charlm.nn.model import is_tied, output_weights
    from charlm.runtime import import_keras

    keras = import_keras()
    config, model = _tied(hidden=hidden)
    embedding = model.get_layer("embedding")
    assert isinstance(embedding, keras.layers.ReversibleEmbedding) and embedding.tie_weights and is_tied(model)
    # One (V, E) variable and none of the untied output's shape (H, V): the output reads the embedding.
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    assert shapes.count((VOCAB, 8)) == 1 and (hidden, VOCAB) not in shapes and (8, VOCAB) not in shapes
    assert any(v is embedding.embeddings for v in model.trainable_variables)
    assert ("projection" in [layer.name for layer in model.layers]) == (hidden != 8)
    tokens, states = _inputs(config)
    for new in (None, np.random.default_rng(2).normal(size=(VOCAB, 8)) * 3):
        if new is not None:  # the embedding changed: every path's output follows it
            embedding.embeddings.assign(new)
        expected = _numpy_logits(model, tokens, states)
        for name, logits in _every_logits(model, config, tokens, states).items():
            assert logits.dtype == "float32"
            np.testing.assert_allclose(np.asarray(logits), expected, rtol=0, atol=2e-5, err_msg=name)
        kernel, bias = output_weights(model)
        want = embedding.embeddings.numpy().T
        if hidden != 8:
            want = model.get_layer("projection").kernel.numpy() @ want
        np.testing.assert_allclose(kernel.numpy(), want, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(bias.numpy(), model.get_layer("output_bias").kernel.numpy()[0])


@pytest.mark.parametrize("charlm_kernels", [True, False])
def test_the_tied_embeddings_gradient_is_the_sum_of_both_uses(charlm_kernels):
    """The tied model's gradient for E equals, in an untied twin with the same weights (output
    kernel Eᵀ), the embedding's gradient plus the output kernel's, transposed; both are non-zero."""
    import numpy as np
    import tensorflow as tf

    from charlm.nn.forward import make_forward
    from charlm.nn.model import build_model

    config, tied = _tied()
    untied_config = type(config)(**{**config.__dict__, "tie_weights": False})
    untied = build_model(untied_config, VOCAB)
    for layer in tied.layers:
        if layer.name.startswith(("lstm", "embedding")):
            untied.get_layer(layer.name).set_weights(layer.get_weights())
    untied.get_layer("logits").set_weights([tied.get_layer("embedding").embeddings.numpy().T,
                                            tied.get_layer("output_bias").kernel.numpy()[0]])
    tokens, states = _inputs(config, seed=3)
    targets = tf.constant(np.random.default_rng(4).integers(0, VOCAB, tokens.shape), tf.int32)

    def gradients(model, model_config):
        forward = make_forward(model, model_config, charlm_kernels=charlm_kernels)
        with tf.GradientTape() as tape:
            logits, _ = forward(tokens, states, True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits))
        grads = tape.gradient(loss, model.trainable_variables)
        return {v.path: tf.convert_to_tensor(g).numpy() for v, g in zip(model.trainable_variables, grads)}

    g_tied, g_untied = gradients(tied, config), gradients(untied, untied_config)
    as_input, as_output = g_untied["embedding/embeddings"], g_untied["logits/kernel"].T
    assert np.abs(as_input).max() > 1e-4 and np.abs(as_output).max() > 1e-4
    np.testing.assert_allclose(g_tied["embedding/embeddings"], as_input + as_output, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g_tied["output_bias/kernel"][0], g_untied["logits/bias"], rtol=1e-4, atol=1e-6)
    for path, grad in g_tied.items():
        if path.startswith("lstm"):
            np.testing.assert_allclose(grad, g_untied[path], rtol=1e-4, atol=1e-6, err_msg=path)


def test_tied_logits_are_float32_under_mixed_precision():
    import numpy as np

    from charlm.runtime import import_keras

    keras = import_keras()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        config, model = _tied(hidden=12)
        tokens, states = _inputs(config)
        paths = _every_logits(model, config, tokens, states)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    reference = np.asarray(paths.pop("keras model"))
    for name, logits in paths.items():
        assert logits.dtype == "float32", name
        np.testing.assert_allclose(np.asarray(logits), reference, rtol=0, atol=0.5, err_msg=name)  # bfloat16 inside


@pytest.mark.slow  # a fresh interpreter
def test_a_tied_file_loads_with_plain_keras_without_charlm_and_with_charlm(tmp_path):
    """Keras' safe mode, in a process that never imports charlm, gives back the model and its
    logits; so does charlm.load."""

    import numpy as np

    import charlm
    from charlm.data.tokenizers import CharTokenizer
    from charlm.nn.lm import LanguageModel

    config, model = _tied(hidden=12)
    tokenizer = CharTokenizer.build("abcdefghijk")  # 11 characters and <pad>, <unk>: 13 symbols
    assert tokenizer.vocab_size == VOCAB
    path = LanguageModel(model, tokenizer, config).save(tmp_path / "tied.keras")
    tokens, states = _inputs(config, batch=1)
    expected = np.asarray(model([tokens, *states])[0])
    loaded = charlm.load(path)
    assert loaded.config.tie_weights
    np.testing.assert_array_equal(np.asarray(loaded.logits(tokens, states)[0]), expected)
    np.testing.assert_allclose(_plain_keras_logits(path, tokens, states, tmp_path), expected, rtol=0, atol=1e-6)


@pytest.mark.slow  # trains a model
def test_a_trained_tied_model_samples_evaluates_agrees_and_shows(tiny_corpus, tmp_path):
    import json

    import numpy as np
    import tensorflow as tf

    import charlm
    from charlm.sample import sampler_for
    from tests.helpers import BUNDLED_SUITE, TINY, invoke

    flags = [x for k in ("cell", "layers", "hidden", "embedding", "batch_size", "bptt", "lr", "seed")
             for x in (f"--{k.replace('_', '-')}", TINY[k])]
    out = tmp_path / "tied"
    result = invoke("train", tiny_corpus, "--out", out, "--tie-weights", "--max-steps", 30, *flags)
    assert result.exit_code == 0, result.output
    assert "output tied to the embedding" in result.stderr + result.stdout
    path = out / "model.keras"
    lm = charlm.load(path)
    assert lm.config.tie_weights and (lm.config.hidden, lm.config.embedding) == (32, 16)  # with a projection
    info = json.loads(invoke("info", "--json", path).stdout)
    assert info["model"]["tie_weights"] and info["parameters"] == lm.model.count_params()
    assert "output tied to the embedding" in invoke("info", path).stdout

    # The sampler's output weights (Eᵀ behind the projection, read once) against the Keras model.
    ids = lm.tokenizer.encode("the keys to the cabinet ")
    _, logits = sampler_for(lm).prime(ids)
    expected = tf.function(lambda x: lm.model([x, *lm.zero_states(1)])[0])(ids[None].astype(np.int32))
    np.testing.assert_allclose(logits.numpy()[0], expected.numpy()[0, -1], rtol=0, atol=1e-4)
    # activations' log-probabilities against the Keras model's
    acts = lm.activations("the keys are here")
    text_ids = lm.tokenizer.encode("\nthe keys are here")
    keras_logits = np.asarray(lm.logits(text_ids[None, :-1])[0])[0]
    keras_logp = keras_logits - np.log(np.exp(keras_logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(acts.logp, keras_logp[np.arange(len(text_ids) - 1), text_ids[1:]], atol=1e-4)

    for args in (["sample", path, "--length", 40, "--seed", 1], ["eval", path, tiny_corpus],
                 ["agree", path, BUNDLED_SUITE], ["show", path, "--text", "the keys are", "--out", tmp_path / "p.html"],
                 ["gradients", path, "--text", "the keys to the cabinet are here .", "--max-lag", 5]):
        result = invoke(*args)
        assert result.exit_code == 0, (args[0], result.output)
    # Fine-tuning keeps the tie.
    result = invoke("train", tiny_corpus, "--init-from", path, "--out", tmp_path / "again", "--max-steps", 2,
                    "--batch-size", 8, "--bptt", 32, "-q")
    assert result.exit_code == 0, result.output
    assert charlm.load(tmp_path / "again" / "model.keras").config.tie_weights


def test_fine_tuning_cannot_tie_an_untied_model(tiny_corpus, tiny_model_path, tmp_path):
    from tests.helpers import assert_one_line_error, invoke

    result = invoke("train", tiny_corpus, "--init-from", tiny_model_path, "--tie-weights", "--out", tmp_path / "x")
    assert_one_line_error(result, "--tie-weights True conflicts with", "fine-tuning keeps the model's architecture")


# ---- regularisers -------------------------------------------------------------------------------


def _keras_parts(path):
    """A .keras file's layers (class, name, config without noise_shape) and every stored weight
    array by its path in the weights file."""
    import io
    import json
    import re
    import zipfile

    import h5py

    with zipfile.ZipFile(path) as archive:  # shared_object_id: an id() of the saving process
        keras_config = json.loads(re.sub(rb'"shared_object_id": \d+', b'"shared_object_id": 0',
                                         archive.read("config.json")))
        weights = archive.read("model.weights.h5")
    layers = [(layer["class_name"], layer["config"]["name"],
               {k: v for k, v in layer["config"].items() if k != "noise_shape"})
              for layer in keras_config["config"]["layers"]]
    arrays = {}
    with h5py.File(io.BytesIO(weights), "r") as store:
        store.visititems(lambda name, item: arrays.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None)
    return layers, arrays


@pytest.mark.slow  # trains two steps; a fresh interpreter
def test_regularisers_leave_no_trace_in_the_saved_model(tmp_path):
    """A model trained with locked dropout, weight drop and embedding dropout saves as the same
    Keras layers and weights as one with plain dropout (the Dropout layers' noise_shape aside),
    loads with plain Keras in safe mode, and infers with its own weights, no mask applied."""

    import numpy as np

    import charlm
    from charlm.config import ModelConfig, TrainConfig
    from charlm.data.tokenizers import CharTokenizer
    from charlm.nn.forward import make_forward
    from charlm.nn.lm import LanguageModel
    from charlm.nn.model import build_model
    from charlm.runtime import import_keras
    from charlm.training.steps import CompiledSteps

    keras = import_keras()
    sizes = dict(cell="lstm", layers=2, hidden=16, embedding=8, dropout=0.3, dropout_output=0.1)
    config = ModelConfig(**sizes, locked_dropout=True, weight_drop=0.5, embedding_dropout=0.2)
    tokenizer = CharTokenizer.build("abcdefghijk")
    keras.utils.set_random_seed(2)
    model = build_model(config, VOCAB)
    trainer = CompiledSteps(model, config, TrainConfig(batch_size=3, bptt=6))
    tokens, states = _inputs(config)
    for _ in range(2):
        trainer.train_step(tokens, tokens, tuple(states))
    path = LanguageModel(model, tokenizer, config).save(tmp_path / "regularised.keras")
    plain_config = ModelConfig(**sizes)
    plain = build_model(plain_config, VOCAB)
    plain.set_weights(model.get_weights())
    plain_path = LanguageModel(plain, tokenizer, plain_config).save(tmp_path / "plain.keras")

    layers, arrays = _keras_parts(path)
    plain_layers, plain_arrays = _keras_parts(plain_path)
    assert layers == plain_layers
    assert arrays.keys() == plain_arrays.keys()
    assert all(np.array_equal(arrays[k], plain_arrays[k]) for k in arrays)

    expected = np.asarray(plain([tokens, *states])[0])
    inference = make_forward(model, config)(tokens, states, False)[0]  # charlm's kernels, not training
    np.testing.assert_allclose(np.asarray(inference), expected, rtol=1e-5, atol=1e-6)
    loaded = charlm.load(path)
    assert (loaded.config.weight_drop, loaded.config.embedding_dropout, loaded.config.locked_dropout) == (0.5, 0.2, True)
    np.testing.assert_array_equal(np.asarray(loaded.logits(tokens, states)[0]), expected)
    np.testing.assert_allclose(_plain_keras_logits(path, tokens, states, tmp_path), expected, rtol=0, atol=1e-6)
    dropout = keras.saving.load_model(path, compile=False).get_layer("dropout_0")
    assert dropout.noise_shape == (None, 1, 8)  # locked: Keras' own broadcast over the steps


def _plain_keras_logits(path, tokens, states, cwd):
    """The logits of the model file at ``path`` computed in a fresh process by
    ``keras.saving.load_model`` in safe mode, with no charlm module imported there."""
    import json

    import numpy as np

    from tests.helpers import run_python

    code = (
        "import json, sys\nimport numpy as np\nimport keras\n"
        "model = keras.saving.load_model(sys.argv[1], compile=False, safe_mode=True)\n"
        "inputs = json.loads(sys.argv[2])\n"
        "logits = model([np.array(inputs[0], np.int32)] + [np.array(s, np.float32) for s in inputs[1:]])[0]\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'charlm']\n"
        "print(json.dumps(np.asarray(logits).tolist()))\n"
    )
    inputs = json.dumps([np.asarray(tokens).tolist(), *[np.asarray(s).tolist() for s in states]])
    result = run_python(code, path, inputs, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return np.array(json.loads(result.stdout.splitlines()[-1]))

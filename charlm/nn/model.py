"""The network: Embedding -> N stacked SimpleRNN/LSTM/GRU layers -> Dense logits.

The model is a plain Keras functional model built from Keras' own layers (so a
GPU can use cuDNN and ``keras.saving.load_model`` needs nothing from charlm).
Its recurrent state is explicit rather than hidden in ``stateful=True`` layers:

    inputs:  tokens (B, T) int32, then each layer's state tensors, (B, H) each
    outputs: logits (B, T, V) float32, then each layer's final states, (B, H) each

With ``tie_weights`` the output matrix is the embedding itself, transposed (Press & Wolf 2017;
Inan et al. 2017): the embedding is a ``keras.layers.ReversibleEmbedding`` (Keras' own layer,
called a second time with ``reverse=True`` for the logits, so the two uses read one variable),
preceded by a linear projection H -> E (``projection``, no bias) where the top layer's width H
differs from the embedding's E. Keras has no layer that is a bias alone, so the output bias is
the (1, V) kernel of a Dense layer (``output_bias``) applied to a constant 1 (``output_one``, a
Dense layer with zero kernel and unit bias, not trained); an Add layer named ``logits`` sums the
two. The file therefore still loads with plain ``keras.saving.load_model`` in safe mode. charlm's
own code never runs that detour: it reads the weights through :func:`output_logits` and
:func:`output_weights`, which compute ``x·Eᵀ + b`` directly.

Dropout is Keras' own Dropout layers (``dropout_<i>`` before recurrent layer i, ``dropout_out``
before the output), with ``noise_shape`` (None, 1, D) for locked dropout; the regularisers that
have no Keras layer (weight drop, embedding dropout) live in the training pass alone
(:mod:`charlm.nn.forward`), so the file holds no trace of them.

LSTM layers carry two states (h, c), GRU and SimpleRNN one (h). Whoever calls
the model keeps the states: the training steps carry them from one window to the
next (truncated BPTT), the sampler through its generation loop. Explicit states
have no fixed batch size, work under tf.distribute (each replica keeps its own)
and can be written to checkpoints, none of which ``stateful=True`` layers allow.
"""

from __future__ import annotations

from charlm.config import ModelConfig
from charlm.runtime import import_keras

keras = import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

_CELLS = {"rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}


def build_model(config: ModelConfig, vocab_size: int, on_gpu: bool = False) -> keras.Model:
    """A new, randomly initialised model for a vocabulary of ``vocab_size`` symbols.

    ``on_gpu``: LSTM and GRU layers are built with ``use_cudnn=True``, so that a
    configuration cuDNN cannot run fails at the first step instead of silently
    taking Keras' generic loop, many times slower. Keras does not save the
    setting: the model file loads anywhere with the default, "auto".
    """
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    state_inputs = [
        keras.Input(shape=(config.hidden,), name=state_name(layer, k, config))
        for layer in range(config.layers)
        for k in range(config.states_per_layer)
    ]
    if config.tie_weights:
        embedding = keras.layers.ReversibleEmbedding(vocab_size, config.embedding, tie_weights=True,
                                                     reverse_dtype="float32", name="embedding")
    else:
        embedding = keras.layers.Embedding(vocab_size, config.embedding, name="embedding")
    x = embedding(tokens)
    final_states = []
    for layer in range(config.layers):
        x = _dropout(x, config, layer)
        cudnn = {"use_cudnn": True} if on_gpu and config.cell in ("lstm", "gru") else {}
        rnn = _CELLS[config.cell](
            config.hidden, return_sequences=True, return_state=True, name=f"{config.cell}_{layer}", **cudnn
        )
        first = layer * config.states_per_layer
        x, *states = rnn(x, initial_state=state_inputs[first : first + config.states_per_layer])
        final_states.extend(states)
    x = _dropout(x, config, config.layers)
    # float32 logits even under a mixed-precision policy: softmax and loss need the range.
    if config.tie_weights:
        logits = _tied_output(x, embedding, config, vocab_size)
    else:
        logits = keras.layers.Dense(vocab_size, name="logits", dtype="float32")(x)
    return keras.Model([tokens, *state_inputs], [logits, *final_states], name="charlm")


def _dropout(x, config: ModelConfig, place: int):
    """x after the dropout of ``place`` (:attr:`ModelConfig.dropout_rates`' order; the last is the
    output's), or x itself where that rate is 0. Locked dropout is Keras' own Dropout with
    ``noise_shape`` (None, 1, D): one mask per row, broadcast over the time steps."""
    rate = config.dropout_rates[place]
    if not rate:
        return x
    noise_shape = (None, 1, x.shape[-1]) if config.locked_dropout else None
    return keras.layers.Dropout(rate, noise_shape=noise_shape, name=dropout_name(place, config))(x)


def dropout_name(place: int, config: ModelConfig) -> str:
    """The name of the Dropout layer of ``place``: ``dropout_<layer>`` before each recurrent
    layer, ``dropout_out`` before the output."""
    return "dropout_out" if place == config.layers else f"dropout_{place}"


def _tied_output(x, embedding, config: ModelConfig, vocab_size: int):
    """logits (B, T, V) = [x·P]·Eᵀ + b from the top layer's output x (B, T, H), in Keras' own
    layers (see the module docstring)."""
    one = keras.layers.Dense(1, kernel_initializer="zeros", bias_initializer="ones", trainable=False,
                             name="output_one", dtype="float32")(x)  # (B, T, 1), all ones
    bias = keras.layers.Dense(vocab_size, use_bias=False, kernel_initializer="zeros", name="output_bias",
                              dtype="float32")(one)  # (B, T, V): b in every row
    if config.hidden != config.embedding:
        x = keras.layers.Dense(config.embedding, use_bias=False, name="projection")(x)  # (B, T, E)
    return keras.layers.Add(name="logits", dtype="float32")([embedding(x, reverse=True), bias])


def is_tied(model: keras.Model) -> bool:
    """Whether the model's output matrix is its embedding (see :func:`build_model`)."""
    return isinstance(model.get_layer("embedding"), keras.layers.ReversibleEmbedding)


def output_logits(model: keras.Model):
    """The model's output layer as a function ``x (..., H) -> logits (..., V)`` float32 of the top
    recurrent layer's output (after the output dropout), reading the model's own variables, so
    that it can be differentiated and compiled: the Dense ``logits`` layer itself, or for a tied
    model ``[x·P]·Eᵀ + b`` without the model's detour through a constant input."""
    if not is_tied(model):
        return model.get_layer("logits")
    embeddings = model.get_layer("embedding").embeddings  # (V, E)
    bias = model.get_layer("output_bias").kernel  # (1, V)
    projection = _projection(model)

    def tied_logits(x):
        if projection is not None:
            x = projection(x)
        x = tf.cast(x, tf.float32)
        rows = tf.reshape(x, [-1, x.shape[-1]])  # (N, E)
        logits = tf.matmul(rows, tf.cast(embeddings, tf.float32), transpose_b=True) + bias[0]  # (N, V)
        return tf.reshape(logits, tf.concat([tf.shape(x)[:-1], [embeddings.shape[0]]], axis=0))

    return tied_logits


def output_weights(model: keras.Model):
    """The output layer as one affine map of the top layer's output: (kernel (H, V), bias (V,))
    float32 tensors with logits = h·kernel + bias (for a tied model kernel = [P·]Eᵀ, computed)."""
    if not is_tied(model):
        dense = model.get_layer("logits")
        return tf.cast(dense.kernel, tf.float32), tf.cast(dense.bias, tf.float32)
    kernel = tf.transpose(tf.cast(model.get_layer("embedding").embeddings, tf.float32))  # (E, V)
    projection = _projection(model)
    if projection is not None:
        kernel = tf.matmul(tf.cast(projection.kernel, tf.float32), kernel)  # (H, E)·(E, V)
    return kernel, tf.cast(model.get_layer("output_bias").kernel[0], tf.float32)


def _projection(model):
    """A tied model's H -> E projection layer, or None where H == E."""
    return next((layer for layer in model.layers if layer.name == "projection"), None)


def hidden_model(model: keras.Model) -> keras.Model:
    """The model without its output layer, on the same layers and weights: ``[tokens, *states]
    -> [x (B, T, H), *states]``, x the top layer's output as :func:`output_logits` reads it."""
    x = model.get_layer("output_one" if is_tied(model) else "logits").input
    return keras.Model(model.inputs, [x, *model.outputs[1:]], name="charlm_hidden")


def state_name(layer: int, k: int, config: ModelConfig) -> str:
    kinds = ("h", "c") if config.cell == "lstm" else ("h",)
    return f"state_{layer}_{kinds[k]}"


def recurrent_layers(model: keras.Model) -> list:
    """The model's SimpleRNN/LSTM/GRU layers, bottom first."""
    return [layer for layer in model.layers if isinstance(layer, keras.layers.RNN)]


def zero_states(config: ModelConfig, batch_size: int) -> list:
    """Fresh (all-zero) states for ``batch_size`` streams: a list of (B, H) float32 tensors."""
    return [tf.zeros((batch_size, config.hidden)) for _ in range(config.layers * config.states_per_layer)]

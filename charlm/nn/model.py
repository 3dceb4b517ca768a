"""The network: Embedding -> N stacked SimpleRNN/LSTM/GRU layers -> Dense logits.

The model is a plain Keras functional model built from Keras' own layers (so a
GPU can use cuDNN and ``keras.saving.load_model`` needs nothing from charlm).
Its recurrent state is explicit rather than hidden in ``stateful=True`` layers:

    inputs:  tokens (B, T) int32, then each layer's state tensors, (B, H) each
    outputs: logits (B, T, V) float32, then each layer's final states, (B, H) each

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
    x = keras.layers.Embedding(vocab_size, config.embedding, name="embedding")(tokens)
    final_states = []
    for layer in range(config.layers):
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, name=f"dropout_{layer}")(x)
        cudnn = {"use_cudnn": True} if on_gpu and config.cell in ("lstm", "gru") else {}
        rnn = _CELLS[config.cell](
            config.hidden, return_sequences=True, return_state=True, name=f"{config.cell}_{layer}", **cudnn
        )
        first = layer * config.states_per_layer
        x, *states = rnn(x, initial_state=state_inputs[first : first + config.states_per_layer])
        final_states.extend(states)
    if config.dropout:
        x = keras.layers.Dropout(config.dropout, name="dropout_out")(x)
    # float32 logits even under a mixed-precision policy: softmax and loss need the range.
    logits = keras.layers.Dense(vocab_size, name="logits", dtype="float32")(x)
    return keras.Model([tokens, *state_inputs], [logits, *final_states], name="charlm")


def state_name(layer: int, k: int, config: ModelConfig) -> str:
    kinds = ("h", "c") if config.cell == "lstm" else ("h",)
    return f"state_{layer}_{kinds[k]}"


def recurrent_layers(model: keras.Model) -> list:
    """The model's SimpleRNN/LSTM/GRU layers, bottom first."""
    return [layer for layer in model.layers if isinstance(layer, keras.layers.RNN)]


def zero_states(config: ModelConfig, batch_size: int) -> list:
    """Fresh (all-zero) states for ``batch_size`` streams: a list of (B, H) float32 tensors."""
    return [tf.zeros((batch_size, config.hidden)) for _ in range(config.layers * config.states_per_layer)]

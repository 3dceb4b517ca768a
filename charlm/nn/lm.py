"""A trained language model: the Keras model, its tokenizer and its settings, in one file.

The file is a Keras archive with charlm's record inside (see :mod:`charlm.nn.modelfile`);
:func:`load` checks it and gives back a :class:`LanguageModel`.
"""

from __future__ import annotations

from pathlib import Path

from charlm.config import ModelConfig, from_dict, to_dict
from charlm.data.tokenizers import Tokenizer, tokenizer_from_config
from charlm.errors import CharlmError
from charlm.fileio import atomic_path
from charlm.nn import modelfile
from charlm.nn.model import zero_states
from charlm.nn.safety import explain_load_error
from charlm.runtime import import_keras

keras = import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

from charlm.inspect.activations import activations  # noqa: E402
from charlm.sample import generate  # noqa: E402


class LanguageModel:
    """A Keras model of charlm's shape (see :mod:`charlm.nn.model`) and its tokenizer.

    Attributes:
        model: the ``keras.Model``: ``[tokens, *states] -> [logits, *states]``.
        tokenizer: the :class:`charlm.data.tokenizers.Tokenizer` the model was trained with.
        config: the :class:`charlm.config.ModelConfig` it was built from.
        info: what training recorded (a dict; empty for an untrained model).
    """

    def __init__(self, model, tokenizer: Tokenizer, config: ModelConfig, info: dict | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.info = dict(info or {})

    def zero_states(self, batch_size: int) -> list:
        """Fresh states for ``batch_size`` streams: a list of (B, H) float32 tensors."""
        return zero_states(self.config, batch_size)

    def logits(self, tokens, states=None):
        """Logits (B, T, V) and final states for int token ids (B, T), starting from ``states``
        (zeros if None)."""
        tokens = tf.convert_to_tensor(tokens, dtype=tf.int32)
        if states is None:
            states = self.zero_states(int(tokens.shape[0]))
        logits, *states = self.model([tokens, *states], training=False)
        return logits, states

    def generate(self, prompt: str = "", on_text=None, **settings) -> list:
        """Sample text continuing ``prompt``: a list of :class:`charlm.sample.Sample`, one per
        ``num_samples``. ``settings`` are those of :class:`charlm.config.SampleConfig`
        (length, temperature, greedy, top_k, top_p, num_samples, seed, stop)."""
        return generate(self, prompt, on_text=on_text, **settings)

    def activations(self, text: str, **options):
        """The values inside the model at every token of ``text``: each layer's h, an LSTM's c
        and gates, a GRU's gates, a SimpleRNN's pre-activation, and each token's
        log-probability; see :func:`charlm.inspect.activations.activations` for ``options``."""
        return activations(self, text, **options)

    def save(self, path) -> Path:
        """Write the model file atomically (see :mod:`charlm.fileio`), so a crash never
        leaves half a model."""
        path = Path(path)
        if path.suffix != ".keras":
            raise CharlmError(f"model files end in .keras, got {path}")
        record = modelfile.make_record(
            self.tokenizer.get_config(), to_dict(self.config), self.info,
            {"keras": keras.__version__, "tensorflow": tf.__version__},
        )
        with atomic_path(path) as tmp:
            self.model.save(tmp)
            modelfile.add_record(tmp, record)
        return path


def load(path) -> LanguageModel:
    """Load a charlm model file: the Keras model (checked by :mod:`charlm.nn.safety`, then
    loaded in Keras' safe mode, which refuses Lambda layers and pickled code) together
    with its tokenizer and settings. Any problem is one :class:`CharlmError` line."""
    record = modelfile.read_record(path)
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for bad archives; all mean the same here.
        raise explain_load_error(path, error) from None
    try:
        tokenizer = tokenizer_from_config(record["tokenizer"])
        config = from_dict(ModelConfig, record["model"])
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CharlmError(f"{path} has a damaged {modelfile.MEMBER} ({error})") from None
    states = config.layers * config.states_per_layer
    if len(model.inputs) != 1 + states or len(model.outputs) != 1 + states or \
            model.outputs[0].shape[-1] != tokenizer.vocab_size:
        raise CharlmError(f"{path}: its Keras model does not match its {modelfile.MEMBER} "
                          "(not a charlm model, or altered)")
    return LanguageModel(model, tokenizer, config, record.get("info"))

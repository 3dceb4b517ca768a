"""A trained language model: the Keras model, its tokenizer and its settings, in one file.

``model.keras`` is an ordinary Keras archive (a zip of ``config.json``,
``metadata.json`` and ``model.weights.h5``) with one more member,
``charlm.json``, holding the tokenizer's vocabulary, the model configuration and
what training recorded (settings, corpus fingerprint, best validation loss).
Keras ignores that member, so ``keras.saving.load_model`` gives back the plain
model; :func:`load` gives back the model together with its tokenizer.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

from charlm.runtime import import_keras
from charlm.config import ModelConfig, from_dict, to_dict
from charlm.errors import CharlmError
from charlm.data.tokenizers import Tokenizer, tokenizer_from_config

keras = import_keras()

CHARLM_MEMBER = "charlm.json"
FORMAT = "charlm-model"
FORMAT_VERSION = 1


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
        from charlm.nn.model import zero_states

        return zero_states(self.config, batch_size)

    def logits(self, tokens, states=None):
        """Logits (B, T, V) and final states for int token ids (B, T), starting from ``states``
        (zeros if None)."""
        import tensorflow as tf

        tokens = tf.convert_to_tensor(tokens, dtype=tf.int32)
        if states is None:
            states = self.zero_states(int(tokens.shape[0]))
        logits, *states = self.model([tokens, *states], training=False)
        return logits, states

    def generate(self, prompt: str = "", on_text=None, **settings) -> list:
        """Sample text continuing ``prompt``: a list of :class:`charlm.sample.Sample`, one per
        ``num_samples``. ``settings`` are those of :class:`charlm.sample.SampleConfig`
        (length, temperature, greedy, top_k, top_p, num_samples, seed, stop)."""
        from charlm.sample import generate

        return generate(self, prompt, on_text=on_text, **settings)

    def save(self, path) -> Path:
        """Write the model file atomically: a temporary file in the same directory,
        renamed over ``path`` only once complete, so a crash never leaves half a model."""
        path = Path(path)
        if path.suffix != ".keras":
            raise CharlmError(f"model files end in .keras, got {path}")
        record = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "tokenizer": self.tokenizer.get_config(),
            "model": to_dict(self.config),
            "info": self.info,
            "versions": {"keras": keras.__version__, "tensorflow": _tf_version()},
        }
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".keras", dir=path.parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a model file is an ordinary file
        try:
            self.model.save(tmp)
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(CHARLM_MEMBER, json.dumps(record, indent=1))
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def read_record(path) -> dict:
    """The ``charlm.json`` member of a model file, checked; one-line errors for anything else."""
    path = Path(path)
    if not path.exists():
        raise CharlmError(f"model file not found: {path}")
    if path.is_dir():
        raise CharlmError(f"{path} is a directory; give the model.keras file inside it")
    from charlm.nn.safety import check_archive, check_zip

    check_zip(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if CHARLM_MEMBER not in names:
                raise CharlmError(f"{path} is a Keras file but not a charlm model (no {CHARLM_MEMBER} inside)")
            check_archive(path, archive)  # before anything reads the rest: members, checksums, classes
            record = json.loads(archive.read(CHARLM_MEMBER))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise CharlmError(f"{path} is corrupted or truncated ({error})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CharlmError(f"{path} is not a charlm model (unexpected {CHARLM_MEMBER})")
    if record.get("format_version", 0) > FORMAT_VERSION:
        raise CharlmError(f"{path} was written by a newer charlm; upgrade charlm to load it")
    return record


def load(path) -> LanguageModel:
    """Load a charlm model file: the Keras model (checked by :mod:`charlm.nn.safety`, then
    loaded in Keras' safe mode, which refuses Lambda layers and pickled code) together
    with its tokenizer and settings. Any problem is one :class:`CharlmError` line."""
    from charlm.nn.safety import explain_load_error

    record = read_record(path)
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for bad archives; all mean the same here.
        raise explain_load_error(path, error) from None
    try:
        tokenizer = tokenizer_from_config(record["tokenizer"])
        config = from_dict(ModelConfig, record["model"])
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CharlmError(f"{path} has a damaged {CHARLM_MEMBER} ({error})") from None
    states = config.layers * config.states_per_layer
    if len(model.inputs) != 1 + states or len(model.outputs) != 1 + states or \
            model.outputs[0].shape[-1] != tokenizer.vocab_size:
        raise CharlmError(f"{path}: its Keras model does not match its {CHARLM_MEMBER} (not a charlm model, or altered)")
    return LanguageModel(model, tokenizer, config, record.get("info"))


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__

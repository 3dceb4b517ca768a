"""Loading untrusted model files: code is refused before it can run, damage is named in one line.

Each bad file is built from the shared tiny model (or from a small Keras model carrying
its charlm.json, so that it looks like a charlm model), then loaded through
``charlm.load`` and through ``charlm train --init-from`` on the command line.
"""

import io
import json
import pickle
import zipfile

import numpy as np
import pytest

import charlm
from charlm.errors import CharlmError
from tests.helpers import assert_one_line_error, invoke


def _members(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write(path, members: dict):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _edit_config(tiny_model_path, path, edit):
    members = _members(tiny_model_path)
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config)
    return _write(path, members)


def _layer(config, name):
    return next(layer for layer in config["config"]["layers"] if layer["config"]["name"] == name)


class _Payload:
    """Unpickling this creates the file ``target``: proof that code ran."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.fixture()
def sentinel(tmp_path):
    return tmp_path / "code-ran"


@pytest.fixture()
def lambda_model(tiny_model_path, tmp_path, sentinel):
    """A Keras model with a Lambda whose function creates ``sentinel``, plus the tiny model's charlm.json."""
    from charlm.runtime import import_keras

    keras = import_keras()
    target = str(sentinel)
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: (open(target, "w").close(), x)[1])(inputs)
    plain = tmp_path / "plain.keras"
    keras.Model(inputs, outputs).save(plain)
    sentinel.unlink()  # building the model ran the function once; loading must not
    members = _members(plain)
    members["charlm.json"] = _members(tiny_model_path)["charlm.json"]
    return _write(tmp_path / "lambda.keras", members)


def _refused(path, *fragments):
    with pytest.raises(CharlmError) as caught:
        charlm.load(path)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_lambda_layer_is_refused_and_never_runs(lambda_model, sentinel):
    _refused(lambda_model, "Lambda", "never loads")
    assert not sentinel.exists()


def test_the_lambda_payload_is_live(lambda_model, sentinel):
    """The check above could fail: unsafe Keras loading of the same file does run the code."""
    from charlm.runtime import import_keras

    keras = import_keras()
    with zipfile.ZipFile(lambda_model) as archive:  # plain Keras ignores charlm.json
        assert "charlm.json" in archive.namelist()
    keras.saving.load_model(lambda_model, safe_mode=False)
    assert sentinel.exists()


def test_keras_safe_mode_alone_refuses_the_lambda(lambda_model, sentinel):
    """Even past charlm's own checks, the Keras load charlm uses is safe mode."""
    from charlm.runtime import import_keras

    keras = import_keras()
    with pytest.raises(ValueError, match="unsafe|lambda|Lambda"):
        keras.saving.load_model(lambda_model, compile=False, safe_mode=True)
    assert not sentinel.exists()


def test_object_from_a_python_module_is_refused(tiny_model_path, tmp_path, sentinel):
    def edit(config):
        _layer(config, "logits")["config"]["kernel_initializer"] = {
            "module": "builtins", "class_name": "open", "config": {"file": str(sentinel), "mode": "w"},
            "registered_name": None,
        }

    path = _edit_config(tiny_model_path, tmp_path / "module.keras", edit)
    _refused(path, "'builtins'", "refusing")
    assert not sentinel.exists()


def test_unknown_class_is_refused(tiny_model_path, tmp_path):
    path = _edit_config(tiny_model_path, tmp_path / "unknown.keras",
                        lambda config: _layer(config, "logits").update(class_name="EvilDense"))
    _refused(path, "EvilDense", "does not know")


def test_unregistered_custom_class_is_refused(tiny_model_path, tmp_path):
    path = _edit_config(tiny_model_path, tmp_path / "custom.keras",
                        lambda config: _layer(config, "logits").update(registered_name="evil>Dense"))
    _refused(path, "evil>Dense")


@pytest.mark.parametrize("name", ["payload.pkl", "model.weights.npz"])
def test_pickled_member_is_refused_and_never_unpickled(tiny_model_path, tmp_path, sentinel, name):
    members = _members(tiny_model_path)
    if name.endswith(".npz"):
        buffer = io.BytesIO()
        np.savez(buffer, weights=np.array([_Payload(sentinel)], dtype=object))
        members[name] = buffer.getvalue()
    else:
        members[name] = pickle.dumps(_Payload(sentinel))
    path = _write(tmp_path / "pickle.keras", members)
    _refused(path, repr(name), "refusing")
    assert not sentinel.exists()


def test_truncated_file(tiny_model_path, tmp_path):
    data = tiny_model_path.read_bytes()
    path = tmp_path / "truncated.keras"
    path.write_bytes(data[: len(data) // 2])
    _refused(path, "truncated")


def test_corrupted_file(tiny_model_path, tmp_path):
    data = bytearray(tiny_model_path.read_bytes())
    with zipfile.ZipFile(tiny_model_path) as archive:
        info = archive.getinfo("model.weights.h5")
    middle = info.header_offset + 100 + info.compress_size // 2  # inside the weights' data
    data[middle : middle + 16] = bytes(255 - b for b in data[middle : middle + 16])
    path = tmp_path / "corrupted.keras"
    path.write_bytes(bytes(data))
    _refused(path, "corrupted", "model.weights.h5")


def test_keras_file_that_is_not_a_charlm_model(tmp_path):
    from charlm.runtime import import_keras

    keras = import_keras()
    inputs = keras.Input((3,))
    path = tmp_path / "plain.keras"
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(path)
    _refused(path, "not a charlm model")


def test_charlm_record_on_a_foreign_model(tiny_model_path, tmp_path):
    from charlm.runtime import import_keras

    keras = import_keras()
    inputs = keras.Input((3,))
    plain = tmp_path / "plain.keras"
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(plain)
    members = _members(plain)
    members["charlm.json"] = _members(tiny_model_path)["charlm.json"]
    _refused(_write(tmp_path / "grafted.keras", members), "does not match")


@pytest.mark.parametrize("content", [b"", b"just some text\n", b"\x89HDF\r\n\x1a\n" + bytes(100)])
def test_not_a_zip(tmp_path, content):
    path = tmp_path / "model.keras"
    path.write_bytes(content)
    _refused(path, "not a zip archive")


def test_damaged_charlm_record(tiny_model_path, tmp_path):
    members = _members(tiny_model_path)
    members["charlm.json"] = b'{"format": "charlm-model", "format_version": 1, "tokenizer": {"kind": "char"'
    _refused(_write(tmp_path / "record.keras", members), "corrupted")


def test_good_model_still_loads(tiny_model_path):
    lm = charlm.load(tiny_model_path)
    assert lm.tokenizer.vocab_size == lm.model.outputs[0].shape[-1]


def test_every_bad_file_is_one_line_on_the_command_line(tiny_model_path, tiny_corpus, tmp_path, sentinel,
                                                        lambda_model):
    """``charlm train --init-from BAD``: exit 1, one line, no traceback, no run directory."""
    data = tiny_model_path.read_bytes()
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(data[: len(data) // 3])
    text = tmp_path / "text.keras"
    text.write_text("hello")
    members = _members(tiny_model_path)
    members["payload.pkl"] = pickle.dumps(_Payload(sentinel))
    pickled = _write(tmp_path / "pickle.keras", members)
    for bad in (lambda_model, truncated, text, pickled, tmp_path / "missing.keras", tmp_path):
        out = tmp_path / f"run-{bad.name}"
        assert_one_line_error(invoke("train", tiny_corpus, "--init-from", bad, "--out", out), bad.name)
        assert not out.exists()
    assert not sentinel.exists()

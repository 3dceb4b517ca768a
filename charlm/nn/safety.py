"""Checks on a model file before Keras reads it: a ``.keras`` file may come from anyone.

Keras' safe mode (which :func:`charlm.nn.lm.load` always uses) refuses Lambda layers
and Python lambdas. These checks come first and refuse more, each with one line
saying what was found, so that nothing in an untrusted file reaches a
deserializer charlm does not need:

- members: only ``config.json``, ``metadata.json``, ``model.weights.h5`` and
  ``charlm.json`` (no pickles, no ``.npz`` weights, no assets);
- integrity: every member's CRC, so a damaged file is named as such;
- ``config.json``: no Lambda or other code-carrying layer, and every object from
  a Keras module (or registered by charlm), never ``os``, ``builtins`` or the like.
"""

from __future__ import annotations

import json
import zipfile

from charlm.errors import CharlmError

MEMBERS = frozenset({"config.json", "metadata.json", "model.weights.h5", "charlm.json"})
# Layers whose config carries Python code or wraps another framework's objects.
CODE_LAYERS = frozenset({"Lambda", "__lambda__", "TorchModuleWrapper", "JaxLayer", "FlaxLayer", "TFSMLayer"})
ZIP_MAGIC = b"PK\x03\x04"


def check_zip(path) -> None:
    """A one-line error for a file that is not a complete zip archive."""
    if zipfile.is_zipfile(path):
        return
    with open(path, "rb") as f:
        head = f.read(4)
    if head == ZIP_MAGIC:
        raise CharlmError(f"{path} is truncated or corrupted (its zip directory is missing); "
                          "copy or download it again")
    raise CharlmError(f"{path} is not a Keras model file (not a zip archive)")


def check_archive(path, archive: zipfile.ZipFile) -> None:
    """Refuse unexpected members, damaged members and unsafe objects in ``config.json``."""
    for name in archive.namelist():
        if name not in MEMBERS:
            raise CharlmError(f"{path} holds an unexpected member {name!r} (a charlm model holds only "
                              f"{', '.join(sorted(MEMBERS))}); refusing to load it")
    damaged = archive.testzip()
    if damaged is not None:
        raise CharlmError(f"{path} is corrupted ({damaged} fails its checksum); copy or download it again")
    if "config.json" not in archive.namelist():
        raise CharlmError(f"{path} is not a Keras model file (no config.json inside)")
    try:
        config = json.loads(archive.read("config.json"))
    except ValueError as error:
        raise CharlmError(f"{path} has a damaged config.json ({error})") from None
    _check_objects(path, config)


def explain_load_error(path, error: Exception) -> CharlmError:
    """Keras' error on loading ``path`` as one line."""
    text = " ".join(str(error).split()) or type(error).__name__
    if "Could not locate class" in text or "Could not deserialize" in text:
        name = text.split("'")[1] if text.count("'") >= 2 else "?"
        return CharlmError(f"{path} uses a class charlm does not know ({name!r}); it was not written by charlm, "
                           "or by a newer version")
    if "lambda" in text.lower() and "safe_mode" in text:
        return CharlmError(f"{path} contains Python code (a lambda), which charlm never loads")
    return CharlmError(f"cannot load {path}: {text.split(' Full object config')[0][:300]}")


def _check_objects(path, value) -> None:
    """Walk the config: every {"class_name": ...} object must be a Keras or charlm one."""
    if isinstance(value, list):
        for item in value:
            _check_objects(path, item)
        return
    if not isinstance(value, dict):
        return
    name = value.get("class_name")
    if isinstance(name, str):
        if name in CODE_LAYERS:
            raise CharlmError(f"{path} contains a {name} layer (Python code), which charlm never loads; "
                              "charlm models have no such layers")
        module = value.get("module")
        if module is not None and not (isinstance(module, str) and module.split(".")[0] in ("keras", "charlm")):
            raise CharlmError(f"{path} refers to {name!r} from the Python module {module!r}; charlm loads only "
                              "Keras and charlm objects, refusing to load it")
        registered = value.get("registered_name")
        if registered not in (None, name) and not str(registered).startswith("charlm>"):
            raise CharlmError(f"{path} uses a custom class {registered!r} that charlm does not know; "
                              "refusing to load it")
    for item in value.values():
        _check_objects(path, item)

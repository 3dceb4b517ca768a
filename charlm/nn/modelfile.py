"""The model file's format: a Keras archive with one more member, ``charlm.json``.

``model.keras`` is an ordinary Keras archive (a zip of ``config.json``, ``metadata.json`` and
``model.weights.h5``) with one more member, ``charlm.json``, holding the tokenizer's
vocabulary, the model's settings and what training recorded (settings, corpus fingerprint,
best validation loss). Keras ignores that member, so ``keras.saving.load_model`` gives back
the plain model; :func:`charlm.nn.lm.load` gives back the model with its tokenizer.

This module reads and writes that member without importing TensorFlow, so that ``charlm
info`` stays fast. ``format_version`` counts changes to the settings recorded there: a
renamed or removed field raises it, and so does a new one (an older charlm refuses settings it
does not know, and should say "upgrade" instead); :func:`read_record` maps the older versions it
knows onto the current one. Version 2 added ``tie_weights`` to the model's settings and the word
rules (``lowercase``, ``split_punctuation``, ``numbers_token``, ``min_count``) to the
tokenizer's; a version-1 file has none of them and reads with their defaults, which are what
version 1 did. Version 3 added the regularisers to the model's settings (``dropout_input``,
``dropout_hidden``, ``dropout_output``, ``locked_dropout``, ``weight_drop``,
``embedding_dropout``) and the schedule, averaging, weight-decay and early-stopping settings to
the recorded training settings; they act only while training, and an older file reads with
their defaults, which are what it was trained with.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from charlm.errors import CharlmError
from charlm.nn.safety import check_archive, check_zip

MEMBER = "charlm.json"
FORMAT = "charlm-model"
FORMAT_VERSION = 3


def make_record(tokenizer_config: dict, model_config: dict, info: dict, versions: dict) -> dict:
    """The ``charlm.json`` of a model: the tokenizer's and the model's settings (as dicts),
    what training recorded, and the library versions that wrote it."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tokenizer": tokenizer_config,
        "model": model_config,
        "info": info,
        "versions": versions,
    }


def add_record(archive_path, record: dict):
    """Append ``record`` as the ``charlm.json`` member of the Keras archive at ``archive_path``."""
    with zipfile.ZipFile(archive_path, "a") as archive:
        archive.writestr(MEMBER, json.dumps(record, indent=1))


def read_record(path) -> dict:
    """The ``charlm.json`` member of a model file, after the checks of
    :mod:`charlm.nn.safety`; one-line errors for anything else."""
    path = Path(path)
    if not path.exists():
        raise CharlmError(f"model file not found: {path}")
    if path.is_dir():
        raise CharlmError(f"{path} is a directory; give the model.keras file inside it")
    check_zip(path)
    try:
        with zipfile.ZipFile(path) as archive:
            if MEMBER not in set(archive.namelist()):
                raise CharlmError(f"{path} is a Keras file but not a charlm model (no {MEMBER} inside)")
            check_archive(path, archive)  # before anything reads the rest: members, checksums, classes
            record = json.loads(archive.read(MEMBER))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise CharlmError(f"{path} is corrupted or truncated ({error})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CharlmError(f"{path} is not a charlm model (unexpected {MEMBER})")
    if record.get("format_version", 0) > FORMAT_VERSION:
        raise CharlmError(f"{path} was written by a newer charlm; upgrade charlm to load it")
    return record

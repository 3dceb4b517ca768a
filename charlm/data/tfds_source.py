"""TensorFlow Datasets as a corpus: ``charlm train tfds:NAME[/CONFIG]``.

Any TFDS dataset with a text feature works (``tiny_shakespeare``; ``lm1b``;
``pg19`` with ``--tfds-key book_text``); each example is one document. The
datasets in the project's ``corpora/`` folder (``charlm_agreement``) are TFDS
builders too; they are registered by importing their builder module and are
prepared on first use, since they need no download.

Offline rule: charlm never starts a download. A dataset that is not prepared in
the data directory is prepared only from files already on disk (``--tfds-manual-dir``,
checked against the dataset's registered file names first); otherwise it is a
one-line error saying how to prepare it. ``tensorflow_datasets`` is imported
here only, when a TFDS corpus is opened: it takes seconds.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path

import numpy as np

from charlm.data import corpus
from charlm.data.corpus import warn
from charlm.errors import CharlmError
from charlm.runtime import import_keras

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROJECT_CORPORA = PROJECT_ROOT / "corpora"


def import_tfds():
    """``tensorflow_datasets``, with absl's chatter off. Imported here, when a ``tfds:`` corpus
    is opened, rather than at the top: it takes seconds, and most corpora are files."""
    import_keras()  # TensorFlow, which it loads, starts with charlm's settings
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
        import tensorflow_datasets as tfds

        tfds.disable_progress_bar()
    except ImportError as error:
        raise CharlmError(f"tfds: corpora need tensorflow-datasets ({error}); pip install it") from None
    return tfds


def project_builder(name: str) -> bool:
    """Register the project's own builder for ``name`` (``corpora/<name>/<name>_dataset_builder.py``)
    with TFDS by importing it; False where the project has none of that name."""
    base = name.split("/")[0].split(":")[0]
    if not base.isidentifier() or not (PROJECT_CORPORA / base / f"{base}_dataset_builder.py").exists():
        return False
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    importlib.import_module(f"corpora.{base}.{base}_dataset_builder")
    return True


class TfdsSource:
    """The examples of one TFDS split (cut by ``--val-fraction``) or of a
    ``TRAIN,VALIDATION`` pair of splits, as documents for :mod:`charlm.data.tokenfile`."""

    def __init__(self, name: str, tfds_split: str | None = None, tfds_key: str | None = None,
                 tfds_data_dir: str | None = None, tfds_manual_dir: str | None = None, log=warn):
        if not name:
            raise CharlmError("tfds: needs a dataset name: tfds:NAME or tfds:NAME/CONFIG")
        self.tfds = tfds = import_tfds()
        local = project_builder(name)
        try:
            builder = tfds.builder(name, data_dir=tfds_data_dir)
        except tfds.core.registered.DatasetNotFoundError:
            raise CharlmError(
                f"unknown TFDS dataset {name!r}; see the TFDS catalog or tfds.list_builders() for names"
            ) from None
        except (ValueError, KeyError, AttributeError) as error:
            raise CharlmError(f"TFDS dataset {name!r}: {_first_line(error)}") from None
        self.builder, self.name = builder, name
        self.key = tfds_key or "text"
        self._check_key(builder.info.features)  # known before the data is prepared
        if not builder.is_prepared():
            _prepare(tfds, builder, name, local, tfds_manual_dir, log)
        self.splits = self._splits(builder.info.splits, tfds_split)
        self.num_regions = len(self.splits)
        full = builder.info.full_name
        self.files = tuple(f"tfds:{full}[{split}]" for split in self.splits)
        self.identity = {"source": "tfds", "dataset": full, "splits": list(self.splits), "key": self.key}

    def _check_key(self, features):
        # A string tensor's NumPy dtype is object.
        text = [k for k, f in features.items()
                if isinstance(f, self.tfds.features.Text)
                or (getattr(f, "np_dtype", None) == np.object_ and getattr(f, "shape", None) == ())]
        if self.key not in features:
            raise CharlmError(f"TFDS dataset {self.name} has no feature {self.key!r}; its text features: "
                              f"{', '.join(text) or 'none'}; choose one with --tfds-key")
        if self.key not in text:
            raise CharlmError(f"feature {self.key!r} of TFDS dataset {self.name} is not text; its text features: "
                              f"{', '.join(text) or 'none'}")

    def _splits(self, available, requested) -> tuple[str, ...]:
        names = list(available.keys())
        if requested is None:
            if "train" in names and "validation" in names:
                return ("train", "validation")
            if "train" in names:
                return ("train",)
            raise CharlmError(f"TFDS dataset {self.name} has no train split; choose from "
                              f"{', '.join(names)} with --tfds-split")
        splits = tuple(s.strip() for s in requested.split(","))
        if len(splits) > 2 or not all(splits):
            raise CharlmError(f"--tfds-split takes one split or TRAIN,VALIDATION, got {requested!r}")
        for split in splits:
            try:
                available[split]  # also parses slices such as train[:10%]
            except (KeyError, ValueError, AssertionError):
                raise CharlmError(f"TFDS dataset {self.name} has no split {split!r}; it has "
                                  f"{', '.join(names)}") from None
        return splits

    def documents(self, region: int = 0):
        """Yield ``(name, chunks)`` for each example of region ``region``'s split, in order."""
        split = self.splits[region]
        dataset = self.builder.as_dataset(split=split, shuffle_files=False)
        key = self.key
        # Only the text feature, 256 examples per step: per-example overhead of tf.data is small then.
        batches = dataset.map(lambda example: example[key]).batch(256)
        number = 0
        for batch in batches.as_numpy_iterator():
            for text in batch:
                yield f"tfds:{self.name}[{split}] example {number}", _slices(text)
                number += 1


def _slices(data: bytes):
    size = corpus.CHUNK_BYTES
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _prepare(tfds, builder, name, local: bool, manual_dir, log):
    """Prepare ``builder`` without touching the network, or explain how to."""
    data_dir = builder.data_dir_root
    if not local:
        infos = type(builder).url_infos or {}
        files = sorted(info.filename or url for url, info in infos.items())
        if manual_dir is None:
            needs = f" ({name} needs {', '.join(files)})" if files else ""
            raise CharlmError(
                f"TFDS dataset {name} is not prepared in {data_dir} and charlm does not download; prepare it "
                f"offline by putting its files in a folder and passing --tfds-manual-dir FOLDER{needs}, or run "
                f"`tfds build {name} --data_dir {data_dir} --manual_dir FOLDER`"
            )
        if not Path(manual_dir).is_dir():
            raise CharlmError(f"--tfds-manual-dir {manual_dir} is not a directory")
        missing = [info.filename or url for url, info in infos.items()
                   if not info.filename or not (Path(manual_dir) / info.filename).exists()]
        if missing or not (infos or builder.MANUAL_DOWNLOAD_INSTRUCTIONS):
            what = ", ".join(missing) if missing else "files it does not name"
            raise CharlmError(f"TFDS dataset {name} needs {what} in --tfds-manual-dir {manual_dir}; "
                              "charlm does not download, so put them there first")
    log(f"charlm: preparing TFDS dataset {name} in {data_dir} from local files")
    config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
    try:
        # TFDS prints its own progress on stdout, which belongs to the command's output (--json).
        with contextlib.redirect_stdout(sys.stderr):
            builder.download_and_prepare(download_config=config)
    except CharlmError:
        raise
    except Exception as error:  # TFDS raises many types; the user needs the one line.
        raise CharlmError(f"preparing TFDS dataset {name} failed: {_first_line(error)}") from None


def _first_line(error) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

"""Writing files so that a crash never leaves half of one, and checking output directories.

Every file or directory charlm writes for a user (model files, plots, run records, token
files, SavedModels) is written aside, in the same directory, and renamed over its final name
only once complete: a reader finds the old version or the new one, never a mix, and a failed
write leaves nothing behind. (Checkpoints follow the same rule with a protocol of their own,
see :mod:`charlm.training.checkpoint`.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from charlm.errors import CharlmError


@contextlib.contextmanager
def atomic_path(path, fsync: bool = True):
    """Yields a temporary path beside ``path`` (same suffix, so writers that go by the suffix
    work) for the caller to write a file to. On a clean exit the file is flushed to disk
    (``fsync``), given the permissions an ordinary new file gets, and renamed to ``path``;
    on any exception it is removed and the exception goes on."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if fsync:
            flush_to_disk(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path, text: str, fsync: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path, fsync) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


@contextlib.contextmanager
def atomic_directory(path):
    """Yields a new empty directory beside ``path`` for the caller to fill. On a clean exit
    it replaces ``path`` (an existing ``path`` is moved aside first and removed after); on
    any exception it is removed and the exception goes on."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}-old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_writable_dir(path) -> Path:
    """Create ``path`` if needed and make sure files can be written in it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CharlmError(f"cannot create output directory {path}: {error.strerror or error}") from None
    if not path.is_dir() or not os.access(path, os.W_OK):
        raise CharlmError(f"output directory {path} is not writable")
    return path


def check_creatable_dir(path) -> Path:
    """Fail early, without creating anything, if ``path`` could not be made a writable
    directory: its nearest existing ancestor must be a writable directory."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == path and path.is_dir():
        return check_writable_dir(path)
    if not existing.is_dir():
        raise CharlmError(f"cannot create output directory {path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK):
        raise CharlmError(f"cannot create output directory {path}: {existing} is not writable")
    return path


def flush_to_disk(path):
    """Flush the file or directory ``path`` to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

"""Atomic writes (charlm.fileio): a file or directory is replaced only once the new one is
complete, with the permissions an ordinary new one gets; a writer that fails leaves the old one
as it was and nothing of its own behind. And the checks of output directories."""

import os
import stat

import pytest

from charlm.errors import CharlmError
from charlm.fileio import atomic_directory, atomic_path, check_creatable_dir, check_writable_dir, write_text


@pytest.fixture(params=[0o022, 0o077])
def umask(request):
    """The process's umask, set to each of two values for the test and restored after it."""
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("existing", [True, False])
def test_atomic_path_replaces_the_file_on_success(tmp_path, umask, existing):
    target = tmp_path / "model.keras"
    if existing:
        target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".keras" and tmp != target
        tmp.write_text("new")
        if existing:  # not replaced yet
            assert target.read_text() == "old"
        else:
            assert not target.exists()
    assert target.read_text() == "new"
    assert _names(tmp_path) == ["model.keras"]
    assert _mode(target) == 0o666 & ~umask


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("existing", [True, False])
def test_atomic_path_leaves_nothing_behind_when_the_writer_raises(tmp_path, error, existing):
    target = tmp_path / "model.keras"
    if existing:
        target.write_text("old")
    with pytest.raises(error):
        with atomic_path(target) as tmp:
            tmp.write_text("half of a new file")
            raise error("the writer failed")
    assert _names(tmp_path) == (["model.keras"] if existing else [])
    if existing:
        assert target.read_text() == "old"


def test_write_text_writes_utf8_atomically(tmp_path, umask):
    path = write_text(tmp_path / "notes.txt", "naïve ✓\n")
    assert path == tmp_path / "notes.txt"
    assert path.read_bytes() == "naïve ✓\n".encode("utf-8")
    assert _names(tmp_path) == ["notes.txt"] and _mode(path) == 0o666 & ~umask


@pytest.mark.parametrize("existing", [True, False])
def test_atomic_directory_replaces_the_directory_on_success(tmp_path, umask, existing):
    target = tmp_path / "served"
    if existing:
        target.mkdir()
        (target / "old.txt").write_text("old")
    with atomic_directory(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target and _names(tmp) == []
        (tmp / "new.txt").write_text("new")
        assert target.exists() == existing  # not yet replaced
    assert _names(target) == ["new.txt"] and (target / "new.txt").read_text() == "new"
    assert _names(tmp_path) == ["served"]  # neither the new one's temporary name nor the old one is left
    assert _mode(target) == 0o777 & ~umask


@pytest.mark.parametrize("existing", [True, False])
def test_atomic_directory_leaves_nothing_behind_when_the_writer_raises(tmp_path, existing):
    target = tmp_path / "served"
    if existing:
        target.mkdir()
        (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "new.txt").write_text("half")
            raise RuntimeError("the writer failed")
    assert _names(tmp_path) == (["served"] if existing else [])
    if existing:
        assert _names(target) == ["old.txt"] and (target / "old.txt").read_text() == "old"


def test_check_writable_dir_creates_the_directory(tmp_path):
    assert check_writable_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(CharlmError, match="cannot create output directory"):
        check_writable_dir(tmp_path / "file" / "sub")


def test_check_creatable_dir_creates_nothing(tmp_path):
    assert check_creatable_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert _names(tmp_path) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(CharlmError, match="is a file, not a directory"):
        check_creatable_dir(tmp_path / "file" / "sub")

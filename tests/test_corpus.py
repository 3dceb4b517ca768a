"""Finding the corpus files (charlm.data.corpus): globs in order, binary files skipped with one
counted warning."""

import os

from charlm.config import TokenizerConfig, TrainConfig
from charlm.data.prepare import prepare


def _config(**kw):
    return TrainConfig(**{"batch_size": 4, "bptt": 8, "val_fraction": 0.1, **kw})


def test_glob_reads_matching_files_in_order(tmp_path):
    for name in ("b.txt", "a.txt", "c.md"):
        (tmp_path / name).write_text(f"{name} " * 200)
    data = prepare([str(tmp_path / "*.txt")], TokenizerConfig(), _config(batch_size=2, bptt=4))
    assert [os.path.basename(f) for f in data.files] == ["a.txt", "b.txt"]


def test_binary_files_in_a_directory_are_skipped_with_a_counted_warning(tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "text.txt").write_text("plain text here " * 100)
    (folder / "blob1.dat").write_bytes(b"\x00\x01\x02" * 100)
    (folder / "blob2.bin").write_bytes(b"abc\x00" * 100)
    data = prepare([folder], TokenizerConfig(), _config(batch_size=2, bptt=4))
    assert [os.path.basename(f) for f in data.files] == ["text.txt"]
    warning = capsys.readouterr().err.strip()
    assert warning.startswith("charlm: warning: skipped 2 binary files") and "\n" not in warning

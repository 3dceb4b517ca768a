"""Reading a corpus (files, directories or globs) and splitting it into train and validation.

The validation split is one contiguous held-out region at the end of the text,
never scattered windows, so that validation text is text the model never saw in
any context. The vocabulary is built from the training split alone.

Two ways in: :func:`read_corpus` reads everything into one string (for scoring
and evaluating a file); :class:`FileSource` hands the files to the streaming
tokenizer (:mod:`charlm.data.tokenfile`) as byte chunks, so that training never holds
the corpus in memory.

Inside a directory or a glob, files that look binary (a NUL byte in their first
8 KiB) are skipped with one warning that counts them; a file named on its own is
always read.
"""

from __future__ import annotations

import glob
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

from charlm.errors import CharlmError

# Files in a directory that are never corpus text.
_SKIP_SUFFIXES = {".keras", ".h5", ".npy", ".npz", ".zip", ".gz", ".png", ".jpg", ".pdf", ".pyc"}
# Bytes read at a time by the streaming reader: memory stays flat whatever the corpus size.
CHUNK_BYTES = 4 << 20


def warn(line: str):
    """The default ``log`` of reading and tokenizing: warnings (lines that start with
    ``charlm: warning:``) go to stderr, progress lines are dropped."""
    if line.startswith("charlm: warning:"):
        print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Corpus:
    """The text of one or more files, joined with a newline between files."""

    text: str
    files: tuple[str, ...]
    fingerprint: str  # sha256 of the files' bytes, in order


def find_files(paths, log=warn) -> list[Path]:
    """The text files named by ``paths``: files as given, directories walked and globs
    (``*``, ``?``, ``[...]``, ``**``) expanded in sorted order. Binary files found
    inside a directory or glob are skipped; ``log`` gets one line counting them."""
    found, skipped = [], []
    for given in paths:
        path = Path(given)
        if not path.exists() and glob.has_magic(str(given)):
            matches = sorted(Path(p) for p in glob.glob(str(given), recursive=True) if Path(p).is_file())
            if not matches:
                raise CharlmError(f"no files match {given}")
            found.extend(_text_files(matches, skipped))
            if not found:
                raise CharlmError(f"no text files match {given} (all {len(skipped)} look binary)")
        elif not path.exists():
            raise CharlmError(f"corpus not found: {given}")
        elif path.is_dir():
            inside = sorted(
                p for p in path.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
                and p.suffix.lower() not in _SKIP_SUFFIXES
            )
            inside = _text_files(inside, skipped)
            if not inside:
                raise CharlmError(f"directory {given} has no text files")
            found.extend(inside)
        else:
            found.append(path)
    if skipped:
        log(f"charlm: warning: skipped {len(skipped)} binary file{'s' if len(skipped) > 1 else ''} "
            f"(a NUL byte in the first 8 KiB), e.g. {skipped[0]}")
    return found


def _text_files(paths, skipped: list) -> list[Path]:
    """``paths`` less the binary ones, which go to ``skipped``."""
    text = []
    for p in paths:
        (skipped if _looks_binary(p) else text).append(p)
    return text


def read_corpus(paths, encoding_errors: str = "strict") -> Corpus:
    """Read and decode every file as UTF-8; a bad byte is an error naming file and offset,
    unless ``encoding_errors="replace"`` substitutes U+FFFD."""
    files = find_files(paths)
    digest = hashlib.sha256()
    texts = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise CharlmError(f"cannot read {path}: {error.strerror or error}") from None
        digest.update(data)
        try:
            text = data.decode("utf-8", errors=encoding_errors)
        except UnicodeDecodeError as error:
            raise CharlmError(
                f"{path}: byte {error.start} (0x{data[error.start]:02x}) is not valid UTF-8; "
                "convert the file to UTF-8, use --tokenizer byte, or pass --encoding-errors replace"
            ) from None
        texts.append(text)
    # A newline between files, so that one file's last line never runs into the next's first.
    text = "".join(t if t.endswith("\n") or i == len(texts) - 1 else t + "\n" for i, t in enumerate(texts))
    if not text.strip():
        raise CharlmError(f"corpus is empty: {', '.join(str(p) for p in files)}")
    return Corpus(text=text, files=tuple(str(p) for p in files), fingerprint=digest.hexdigest())


def split_text(text: str, val_fraction: float, on_whitespace: bool = False) -> tuple[str, str]:
    """The first ``1 - val_fraction`` of ``text`` for training, the rest for validation.

    With ``on_whitespace`` the cut moves forward to the next whitespace so that no
    word is split between the two parts.
    """
    cut = len(text) - int(round(len(text) * val_fraction))
    if on_whitespace:
        while cut < len(text) and not text[cut].isspace():
            cut += 1
    return text[:cut], text[cut:]


def _looks_binary(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return b"\0" in f.read(8192)
    except OSError:
        return False


class FileSource:
    """Corpus files as documents of byte chunks, for :mod:`charlm.data.tokenfile`.

    One region (the validation split is cut off its end by ``--val-fraction``);
    each file is one document.
    """

    num_regions = 1

    def __init__(self, paths, log=warn):
        self.paths = find_files(paths, log)
        self.files = tuple(str(p) for p in self.paths)
        self.identity = {"source": "files"}

    def documents(self, region: int = 0):
        """Yield ``(name, chunks)`` per file, ``chunks`` an iterator of bytes."""
        for path in self.paths:
            yield str(path), _read_chunks(path)


def _read_chunks(path: Path):
    size = CHUNK_BYTES  # read at call time, so tests can make chunks tiny
    try:
        with open(path, "rb") as f:
            while chunk := f.read(size):
                yield chunk
    except OSError as error:
        raise CharlmError(f"cannot read {path}: {error.strerror or error}") from None

"""Streaming tokenization into a cached token file that training reads through a memory map.

A corpus of any size is tokenized with memory that does not grow with it:

pass 0  (scan)    read every document in 4 MiB chunks: sha256 of the bytes (the
                  cache key), the number of characters, the number of documents.
pass 1  (vocab)   the training region only: which characters (char with
                  normalization) occur. Skipped for byte; for char without
                  normalization, pass 0 notes where each character first occurs
                  instead; and when a tokenizer is given (fine-tuning).
pass 2  (encode)  every document again, token ids written to ``<key>.tokens`` in the
                  narrowest unsigned type that holds the vocabulary (uint8, uint16
                  or uint32), training tokens first, then validation tokens.

Words take one pass over the text instead of passes 1 and 2: each piece is cut at
whitespace into raw tokens (:mod:`charlm.data.words`), numbered in the order first seen,
and those numbers (32 bits) go to an unnamed temporary file, while the training region's
are counted. The vocabulary then comes from the counts (each distinct raw token's words
worked out once: lower case, punctuation, numbers), and the temporary file is mapped,
a chunk at a time, through a table from raw token to word ids into ``<key>.tokens``. The
text is split once and each raw token looked up once, at C speed; the rules run once per
distinct raw token. Memory grows with the number of distinct raw tokens (as any word
count does), not with the corpus.

How the validation cut is made (one region, as with files): the documents are
decoded as UTF-8 and their characters counted; with N characters in all, the
first ``N - round(N * val_fraction)`` characters are training text and the rest
validation text, which is the cut :func:`charlm.data.corpus.split_text` makes on the
joined text. For the word tokenizer the cut moves forward to the next whitespace
character (or the end of the document), so no word is split. A source with two
regions (a TFDS train/validation split pair) is not cut: region 0 trains, region 1
validates.

Documents: between two documents (files, TFDS examples) one ``<doc>`` token is
written. The vocabulary holds ``<doc>`` only when a region has more than one
document (char: id 2 after ``<pad>``, ``<unk>``; word: id 3 after ``<eol>``; byte:
id 257), so a single file tokenizes as it would without documents. A ``<doc>`` at the cut
belongs to the region where the next document starts. A given tokenizer without
``<doc>`` gets the encoding of a newline between documents instead.

Text is read in pieces that end just after the last newline (or else space) of a
chunk, the rest carried into the next chunk: no UTF-8 sequence, word or
normalization unit is split, so the pieces tokenize exactly like the whole text.
Pure-ASCII pieces stay bytes: char tokenization with at most 256 symbols is then
one ``bytes.translate`` call; other pieces go through a numpy table indexed by code
point (speeds in BENCHMARKS.md).

The cache: ``<key>.tokens`` and ``<key>.json`` in the cache directory. The key is
the sha256 of the document bytes and sizes, the tokenizer settings (or the given
tokenizer's vocabulary), the validation fraction and the source, so a changed
corpus never meets a stale file. The JSON header (written last, atomically) has
the dtype, the length, the unknown tokens of each region and a CRC-32 of the token bytes; every load checks the
file size and the CRC (a sequential read, small next to tokenizing), and a file that fails either is reported and rebuilt, never used.
"""

from __future__ import annotations

import array
import collections
import hashlib
import itertools
import json
import os
import re
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlm.config import to_dict
from charlm.data.tokenizers import (
    DOC,
    EOL,
    ByteTokenizer,
    CharTokenizer,
    Tokenizer,
    WordTokenizer,
    codepoints_of,
    normalize,
    tokenizer_from_config,
)
from charlm.data.words import DOC_RAW, RawIndex, WordRules, raw_tokens
from charlm.errors import CharlmError
from charlm.fileio import atomic_path, write_text

FORMAT = 2  # 2: the header counts unknown tokens
_SPACE = re.compile(r"\s")  # the same characters as str.isspace()
_ASCII_SPACE = re.compile(rb"[\t\n\x0b\x0c\r\x1c-\x1f ]")  # str.isspace() within ASCII
_READ = 16 << 20  # bytes per read when checking a token file's CRC
_QUIET_BELOW = 32 << 20  # corpora smaller than this (bytes) tokenize without a progress line
_RAW_IDS = 1 << 20  # raw token ids counted or mapped at a time (4 MiB)
_RAW = np.dtype(np.uintc)  # a raw token id: array.array's "I", 32 bits


@dataclass(frozen=True)
class TokenFile:
    """A tokenized corpus: ``ids`` (a read-only memory map, training tokens then
    validation tokens) and what is known about it."""

    ids: np.ndarray
    tokenizer: Tokenizer
    train_tokens: int
    val_chars: int
    path: Path | None
    cached: bool  # True when an existing file was reused
    unknown: tuple[int, int] = (0, 0)  # unknown tokens in the training and the validation part

    @property
    def train_ids(self) -> np.ndarray:
        return self.ids[: self.train_tokens]  # a view: nothing is copied

    @property
    def val_ids(self) -> np.ndarray:
        return self.ids[self.train_tokens:]


def token_dtype(vocab_size: int):
    """The narrowest unsigned integer type that holds ids ``0 .. vocab_size-1``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise CharlmError(f"a vocabulary of {vocab_size:,} symbols is too large")


def build_token_file(source, tokenizer_config, val_fraction: float, cache_dir=None,
                     tokenizer: Tokenizer | None = None, log=None) -> tuple[TokenFile, dict]:
    """Tokenize ``source`` (a :class:`charlm.data.corpus.FileSource` or TFDS source) into a
    token file in ``cache_dir``, or reuse the one a previous run left there.

    Without ``cache_dir`` the file goes to a temporary directory and is deleted as
    soon as it is mapped. Returns the token file and the scan (``fingerprint``:
    sha256 of the bytes; ``chars`` and ``documents`` per region).
    """
    log = log or (lambda line: None)
    kind = tokenizer_config.kind
    errors = "surrogateescape" if kind == "byte" else tokenizer_config.encoding_errors
    # Char vocabularies without normalization come out of pass 0 (first occurrences).
    first_seen = _FirstSeen() if kind == "char" and not tokenizer_config.normalization and tokenizer is None else None
    scan = _scan(source, errors, first_seen)
    if scan["bytes"] < _QUIET_BELOW:
        # Only large corpora are worth progress lines (small ones take a blink, and an
        # error right after must stay the only line on stderr); warnings always pass.
        log = _warnings_only(log)
    key = _cache_key(source, scan, tokenizer_config, val_fraction, tokenizer)
    if cache_dir is not None:
        cache_dir = writable_cache(cache_dir)
        found = _load(cache_dir, key, log)
        if found is not None:
            return found, scan
    cut = None
    if source.num_regions == 1:
        cut = scan["chars"][0] - int(round(scan["chars"][0] * val_fraction))
    aligned = kind == "word" or bool(tokenizer_config.normalization or (tokenizer and tokenizer.kind == "char"
                                                                        and tokenizer.normalization))
    layout = _Layout(source, errors, cut, on_whitespace=kind == "word", aligned=aligned)
    multi_doc = max(scan["documents"]) > 1  # a <doc> token will occur
    directory = cache_dir if cache_dir is not None else Path(tempfile.mkdtemp(prefix="charlm-tokens-"))
    started = time.perf_counter()
    if kind == "word":
        tokenizer, header = _write_words(layout, tokenizer, tokenizer_config, multi_doc, directory, key)
    else:
        if first_seen is not None:
            symbols = first_seen.symbols(before=scan["chars"][0] if cut is None else cut)
            tokenizer = CharTokenizer.from_symbols(symbols, documents=multi_doc)
        elif tokenizer is None:
            tokenizer = _build_vocabulary(layout, tokenizer_config, multi_doc)
        header = _write(_encoded(layout, tokenizer), tokenizer, directory, key)
    seconds = time.perf_counter() - started
    log(f"charlm: tokenized {scan['bytes'] / 1e6:,.1f} MB into {header['length']:,} tokens ({header['dtype']}) "
        f"in {seconds:.1f}s" + (f"; cached as {directory / (key + '.tokens')}" if cache_dir is not None else ""))
    path = directory / f"{key}.tokens"
    ids = _map(path, header)
    if cache_dir is None:
        # The mapping keeps the data alive; the names can go (POSIX semantics).
        for name in (path, directory / f"{key}.json"):
            name.unlink(missing_ok=True)
        directory.rmdir()
        path = None
    return TokenFile(ids, tokenizer, header["train_tokens"], header["val_chars"], path, False,
                     tuple(header["unknown"])), scan


def _warnings_only(log):
    return lambda line: log(line) if line.startswith("charlm: warning:") else None


# ----------------------------------------------------------------------------- reading text


def iter_text(chunks, name: str, errors: str, aligned: bool = True):
    """Split the byte ``chunks`` of one document into pieces that end just after a
    newline or space (except the last piece), and decode each as UTF-8: a pure-ASCII
    piece stays ``bytes`` (one byte per character), any other becomes ``str``.

    A newline or space byte never occurs inside a UTF-8 sequence, so each piece
    decodes, and tokenizes, exactly as it would within the whole text.
    ``errors``: strict, replace or surrogateescape. With ``aligned=False`` (enough
    for counting, for char tokenization without normalization and for bytes) a
    pure-ASCII chunk is passed on as it is, saving a copy: an ASCII byte can
    neither continue nor start inside a UTF-8 sequence.
    """
    pending, offset = [], 0  # bytes after the last break so far; byte offset of the next piece
    for raw in chunks:
        if not aligned and raw.isascii():
            if pending:
                tail, pending = b"".join(pending), []
                yield _decode(tail, name, offset, errors)
                offset += len(tail)
            yield raw
            offset += len(raw)
            continue
        end = raw.rfind(b"\n")
        if end < 0:
            end = raw.rfind(b" ")
        if end < 0:
            pending.append(raw)  # no break yet: a very long line or word; keep reading
            continue
        head = b"".join([*pending, raw[: end + 1]]) if pending else raw[: end + 1]
        pending = [raw[end + 1:]]
        yield _decode(head, name, offset, errors)
        offset += len(head)
    tail = b"".join(pending)
    if tail:
        yield _decode(tail, name, offset, errors)


def _decode(data: bytes, name: str, offset: int, errors: str):
    if data.isascii():
        return data
    try:
        return data.decode("utf-8", errors)
    except UnicodeDecodeError as error:
        at = offset + error.start
        raise CharlmError(
            f"{name}: byte {at} (0x{data[error.start]:02x}) is not valid UTF-8; convert the file to "
            "UTF-8, use --tokenizer byte, or pass --encoding-errors replace"
        ) from None


def _str(piece) -> str:
    """A piece as ``str`` (ASCII pieces come as bytes)."""
    return piece.decode("ascii") if isinstance(piece, bytes) else piece


def _hashing(chunks, digest, sizes: list):
    """Pass ``chunks`` through, feeding ``digest`` and adding up their size in ``sizes[-1]``."""
    for chunk in chunks:
        digest.update(chunk)
        sizes[-1] += len(chunk)
        yield chunk


def _scan(source, errors: str, first_seen: _FirstSeen | None = None) -> dict:
    """Pass 0: content hash, characters per region, documents, total bytes; and the
    first occurrences of characters in region 0 into ``first_seen``."""
    digest, layout = hashlib.sha256(), hashlib.sha256()
    chars, documents, total, content = [], [], 0, False
    for region in range(source.num_regions):
        count = 0
        documents.append(0)
        for name, chunks in source.documents(region):
            sizes = [0]
            for piece in iter_text(_hashing(chunks, digest, sizes), name, errors, aligned=False):
                if first_seen is not None and region == 0:
                    first_seen.update(piece, count)
                count += len(piece)
                content = content or not _str(piece).isspace()
            layout.update(f"{region}:{sizes[0]};".encode())
            documents[-1] += 1
            total += sizes[0]
        chars.append(count)
    if not content:
        raise CharlmError(f"corpus is empty: {', '.join(source.files)}")
    return {"fingerprint": digest.hexdigest(), "layout": layout.hexdigest(), "chars": chars,
            "documents": documents, "bytes": total}


class _FirstSeen:
    """Where each character first occurs (a character position in region 0), so that
    the char vocabulary of the training part, positions [0, cut), needs no pass of its own."""

    def __init__(self):
        self.first: dict[int, int] = {}  # code point -> position
        self.ascii = b""  # the ASCII bytes seen so far

    def update(self, piece, pos: int):
        """Note the characters of ``piece`` (bytes: ASCII; or str) that starts at position ``pos``."""
        data = piece if isinstance(piece, bytes) else piece.encode("utf-8", "surrogatepass")
        # Deleting the ASCII bytes already seen leaves new ASCII bytes and whole
        # multi-byte sequences: usually nothing, so the common case is one C call.
        rest = data.translate(None, self.ascii)
        if not rest:
            return
        if isinstance(piece, bytes):  # one byte per character
            for byte in np.flatnonzero(np.bincount(np.frombuffer(rest, dtype=np.uint8))).tolist():
                self.first[byte] = pos + piece.index(byte)
        else:
            new = set(codepoints_of(rest.decode("utf-8", "surrogatepass")).tolist()) - self.first.keys()
            if new:
                codepoints = codepoints_of(piece)
                for code in new:
                    self.first[code] = pos + int(np.argmax(codepoints == code))
        self.ascii = bytes(sorted(c for c in self.first if c < 128))

    def symbols(self, before: int | None = None) -> list[str]:
        """The characters that occur before position ``before`` (default: anywhere), in code point order."""
        return [chr(c) for c in sorted(self.first) if before is None or self.first[c] < before]


class _Layout:
    """The corpus as a sequence of ``(region, piece)``: region 0 trains, region 1
    validates; ``piece`` is text, or None for a ``<doc>`` boundary token.

    With one source region, the cut at character ``cut`` makes the regions (see the
    module docstring).
    """

    def __init__(self, source, errors: str, cut: int | None, on_whitespace: bool, aligned: bool = True):
        self.source, self.errors, self.cut, self.on_whitespace = source, errors, cut, on_whitespace
        self.aligned = aligned  # pieces must end at a newline or space (words, normalization)

    def __iter__(self):
        if self.cut is None:
            for region in range(self.source.num_regions):
                for i, (name, chunks) in enumerate(self.source.documents(region)):
                    if i:
                        yield region, None
                    for piece in iter_text(chunks, name, self.errors, self.aligned):
                        yield region, piece
            return
        cut, pos, in_val = self.cut, 0, self.cut <= 0
        for i, (name, chunks) in enumerate(self.source.documents(0)):
            in_val = in_val or pos >= cut
            if i:
                yield int(in_val), None
            for piece in iter_text(chunks, name, self.errors, self.aligned):
                # A piece starting exactly at the cut still goes through the split below:
                # for words the cut then moves past the word the piece starts with.
                end = pos + len(piece)
                if in_val or end <= cut:
                    yield int(in_val), piece
                else:
                    at = cut - pos
                    if self.on_whitespace:
                        space = (_ASCII_SPACE if isinstance(piece, bytes) else _SPACE).search(piece, at)
                        at = space.start() if space else len(piece)
                    cut = pos + at  # where the cut finally is
                    if at:
                        yield 0, piece[:at]
                    if at < len(piece):
                        yield 1, piece[at:]
                    in_val = True
                pos = end


# ----------------------------------------------------------------------------- vocabulary


def _build_vocabulary(layout: _Layout, config, multi_doc: bool) -> Tokenizer:
    """Pass 1: the char or byte tokenizer of the training region (region 0)."""
    if config.kind == "byte":
        return ByteTokenizer.build(documents=multi_doc)
    seen = _FirstSeen()  # with normalization: the characters of the normalized text
    for region, piece in layout:
        if region:
            break
        if piece is not None:  # (normalization leaves ASCII as it is)
            seen.update(piece if isinstance(piece, bytes) else normalize(piece, config.normalization), 0)
    return CharTokenizer.from_symbols(seen.symbols(), config.normalization, documents=multi_doc)


# ----------------------------------------------------------------------------- encoding


class _Encoder:
    """Char or byte text pieces to ids of ``dtype`` (numpy arrays or raw bytes), as
    ``tokenizer.encode`` would give them, only faster."""

    def __init__(self, tokenizer: Tokenizer, dtype):
        self.tokenizer, self.dtype = tokenizer, dtype
        self.kind = tokenizer.kind
        if self.kind == "char":
            # table[code point] = id; code points past the table clip to its last entry, UNK.
            codes = {ord(s): i for i, s in enumerate(tokenizer.vocabulary) if len(s) == 1}
            size = max(codes, default=0) + 2
            self.table = np.full(size, tokenizer.unk_id, dtype=dtype)
            for code, i in codes.items():
                self.table[code] = i
            self.ascii = None
            if dtype == np.uint8:
                self.ascii = bytes(int(self.table[min(b, size - 1)]) for b in range(256))

    def __call__(self, piece):
        ascii_piece = isinstance(piece, bytes)
        if self.kind == "char":
            if ascii_piece:  # (normalization leaves ASCII as it is)
                if self.ascii is not None:
                    return piece.translate(self.ascii)
                return np.take(self.table, np.frombuffer(piece, dtype=np.uint8), mode="clip")
            piece = normalize(piece, self.tokenizer.normalization)
            return np.take(self.table, codepoints_of(piece), mode="clip")
        data = piece if ascii_piece else piece.encode("utf-8", "surrogateescape")
        return np.frombuffer(data, dtype=np.uint8).astype(self.dtype) + 1


def _doc_ids(tokenizer: Tokenizer, encode) -> bytes:
    """What goes between two documents: ``<doc>``, or a newline for a tokenizer without it."""
    if DOC in tokenizer.index:
        return np.array([tokenizer.index[DOC]], dtype=encode.dtype).tobytes()
    return _as_bytes(encode("\n"))


def _as_bytes(ids) -> bytes:
    return ids if isinstance(ids, bytes) else ids.tobytes()


def _encoded(layout: _Layout, tokenizer: Tokenizer):
    """Pass 2 for char and byte: (region, id bytes, characters) for each piece of ``layout``."""
    encode = _Encoder(tokenizer, token_dtype(tokenizer.vocab_size))
    doc = _doc_ids(tokenizer, encode)
    for region, piece in layout:
        yield (region, doc, 0) if piece is None else (region, _as_bytes(encode(piece)), len(piece))


def _write(pieces, tokenizer: Tokenizer, directory: Path, key: str) -> dict:
    """Write ``pieces`` ((region, id bytes, characters), training region first) into
    ``<key>.tokens``, then commit ``<key>.json``."""
    dtype = token_dtype(tokenizer.vocab_size)
    unk = tokenizer.unk_id
    crc, length, train_tokens, chars, unknown = 0, 0, None, [0, 0], [0, 0]
    try:
        with atomic_path(directory / f"{key}.tokens", fsync=False) as tmp, open(tmp, "wb") as f:
            for region, data, n_chars in pieces:
                if region and train_tokens is None:
                    train_tokens = length
                chars[region] += n_chars
                if unk is not None:
                    unknown[region] += _count(data, unk, dtype)
                f.write(data)
                crc = zlib.crc32(data, crc)
                length += len(data) // dtype.itemsize
    except OSError as error:
        raise CharlmError(f"cannot write the token file in {directory}: {error.strerror or error}; "
                          "pass --cache-dir with a writable directory that has space") from None
    header = {
        "format": FORMAT, "key": key, "dtype": dtype.name, "length": length,
        "train_tokens": length if train_tokens is None else train_tokens,
        "train_chars": chars[0], "val_chars": chars[1], "unknown": unknown, "crc32": crc,
        "tokenizer": tokenizer.get_config(),
    }
    _write_json(directory / f"{key}.json", header)
    return header


def _count(data: bytes, value: int, dtype) -> int:
    """How many ids in ``data`` (of ``dtype``) equal ``value``."""
    if dtype == np.uint8:
        return data.count(value)
    return int(np.count_nonzero(np.frombuffer(data, dtype=dtype) == value))


# ----------------------------------------------------------------------------- words


def _write_words(layout: _Layout, tokenizer, config, multi_doc: bool, directory: Path, key: str):
    """The word tokenizer's passes (see the module docstring): ``(tokenizer, header)``."""
    rules = tokenizer.rules if tokenizer is not None else WordRules(
        config.lowercase, config.split_punctuation, config.numbers_token)
    try:
        # Unnamed: nothing is left behind, whatever happens.
        with tempfile.TemporaryFile(dir=directory) as raw_file:
            raws, regions = _raw_pass(layout, raw_file, count=tokenizer is None)
            if tokenizer is None:
                tokenizer = WordTokenizer.from_counts(
                    _word_counts(raws, rules), config.max_vocab, documents=multi_doc, min_count=config.min_count,
                    lowercase=rules.lowercase, split_punctuation=rules.split_punctuation,
                    numbers_token=rules.numbers_token)
            table = _WordTable(tokenizer, raws.strings)
            return tokenizer, _write(_mapped_words(raw_file, table, regions), tokenizer, directory, key)
    except OSError as error:
        raise CharlmError(f"cannot write a temporary file in {directory}: {error.strerror or error}; "
                          "pass --cache-dir with a writable directory that has space") from None


def _raw_pass(layout: _Layout, raw_file, count: bool):
    """Number every raw token of ``layout`` into ``raw_file`` (uint32); count the training
    region's. Returns the :class:`RawIndex` (with ``counts``, an array by raw id, when
    ``count``) and, per region, (raw tokens, characters)."""
    raws = RawIndex()
    counts, pending, buffered = np.zeros(0, np.int64), [], 0
    regions = [[0, 0], [0, 0]]
    doc = np.zeros(1, _RAW)  # DOC_RAW's id
    for region, piece in layout:
        if piece is None:
            ids = doc
        else:
            # array.array takes the ids from the iterator faster than np.fromiter does.
            ids = np.frombuffer(array.array("I", map(raws.__getitem__, raw_tokens(_str(piece)))), _RAW)
            regions[region][1] += len(piece)
        if count and region == 0:
            pending.append(ids)
            buffered += len(ids)
            if buffered >= _RAW_IDS:  # bincount in large batches: a TFDS example is a piece
                counts, pending, buffered = _add_counts(counts, pending, len(raws.strings)), [], 0
        raw_file.write(ids.data)
        regions[region][0] += len(ids)
    raws.counts = _add_counts(counts, pending, len(raws.strings))
    return raws, regions


def _add_counts(counts: np.ndarray, pending: list, size: int) -> np.ndarray:
    """``counts`` (by raw id) grown to ``size`` plus the occurrences in the ``pending`` id arrays."""
    grown = np.zeros(size, np.int64)
    grown[: len(counts)] = counts
    if pending:
        grown += np.bincount(np.concatenate(pending), minlength=size)
    return grown


def _word_counts(raws: RawIndex, rules: WordRules) -> dict:
    """Word -> occurrences in the training region, from the raw tokens' counts."""
    strings, counts = raws.strings, raws.counts
    seen = np.flatnonzero(counts)
    seen = seen[seen != 0].tolist()  # raw id 0: the document boundary
    if rules.plain:
        return dict(zip([strings[r] for r in seen], counts[seen].tolist()))
    words = collections.Counter()
    for r, n in zip(seen, counts[seen].tolist()):
        for word in rules.words(strings[r]):
            words[word] += n
    return words


class _WordTable:
    """Raw token id -> word ids of ``tokenizer`` (a raw token may be several words), for
    whole arrays of raw ids at once."""

    def __init__(self, tokenizer: WordTokenizer, raws: list):
        dtype = token_dtype(tokenizer.vocab_size)
        index = tokenizer.index
        # Between documents: <doc>, or a line break for a tokenizer without it.
        ids = [(index.get(DOC, index[EOL]),), *map(tokenizer.word_ids, raws[1:])]
        assert raws[0] == DOC_RAW
        self.lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        self.flat = np.fromiter(itertools.chain.from_iterable(ids), dtype)
        self.single = bool((self.lengths == 1).all())
        self.starts = np.cumsum(self.lengths) - self.lengths
        self.first = self.flat[self.starts]

    def __call__(self, raw_ids: np.ndarray) -> np.ndarray:
        first = self.first[raw_ids]
        if self.single:
            return first
        lengths = self.lengths[raw_ids]
        out = np.repeat(first, lengths)  # each raw token's first word, repeated to its length
        multi = np.flatnonzero(lengths > 1)  # the few raw tokens of several words
        if len(multi):
            # Word j >= 1 of raw token k goes to out[begin_k + j] and is flat[starts[raw k] + j].
            more = lengths[multi] - 1
            begin = (np.cumsum(lengths) - lengths)[multi]
            j = np.arange(more.sum()) - np.repeat(np.cumsum(more) - more, more) + 1
            out[np.repeat(begin, more) + j] = self.flat[np.repeat(self.starts[raw_ids[multi]], more) + j]
        return out


def _mapped_words(raw_file, table: _WordTable, regions):
    """The pieces for :func:`_write`: ``raw_file``'s ids mapped through ``table``, a chunk
    at a time; each region opens with an empty piece that carries its characters."""
    raw_file.seek(0)
    for region, (tokens, chars) in enumerate(regions):
        yield region, b"", chars
        while tokens:
            n = min(tokens, _RAW_IDS)
            raw_ids = np.fromfile(raw_file, dtype=_RAW, count=n)
            tokens -= n
            yield region, table(raw_ids).tobytes(), 0


def _write_json(path: Path, value: dict):
    try:
        write_text(path, json.dumps(value) + "\n", fsync=False)
    except OSError as error:
        raise CharlmError(f"cannot write {path}: {error.strerror or error}") from None


# ----------------------------------------------------------------------------- the cache


def _cache_key(source, scan, tokenizer_config, val_fraction, tokenizer) -> str:
    settings = {
        "format": FORMAT, "fingerprint": scan["fingerprint"], "layout": scan["layout"],
        "source": source.identity, "tokenizer": to_dict(tokenizer_config),
        "val_fraction": val_fraction if source.num_regions == 1 else None,
        "given_tokenizer": tokenizer.get_config() if tokenizer is not None else None,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:40]


def writable_cache(cache_dir) -> Path:
    """``cache_dir``, created if needed, after checking that files can be written in it."""
    path = Path(cache_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CharlmError(f"cannot create the cache directory {path}: {error.strerror or error}; "
                          "pass --cache-dir with a writable directory") from None
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise CharlmError(f"the cache directory {path} is not writable; pass --cache-dir with a writable directory")
    return path


def _load(directory: Path, key: str, log) -> TokenFile | None:
    """The cached token file for ``key`` after checking it, or None (absent or bad: rebuild)."""
    header_path, path = directory / f"{key}.json", directory / f"{key}.tokens"
    if not header_path.exists():
        return None
    problem = check_token_file(path, header_path)
    if problem:
        log(f"charlm: warning: the cached token file {path} is {problem}; rebuilding it")
        return None
    header = json.loads(header_path.read_text(encoding="utf-8"))
    tokenizer = tokenizer_from_config(header["tokenizer"])
    log(f"charlm: using the cached token file {path} ({header['length']:,} tokens)")
    return TokenFile(_map(path, header), tokenizer, header["train_tokens"], header["val_chars"], path, True,
                     tuple(header["unknown"]))


def check_token_file(path: Path, header_path: Path) -> str | None:
    """What is wrong with a token file (``"truncated ..."``, ``"corrupt ..."``), or None."""
    try:
        header = json.loads(Path(header_path).read_text(encoding="utf-8"))
        dtype, length, expected = np.dtype(header["dtype"]), int(header["length"]), int(header["crc32"])
        if header.get("format") != FORMAT:
            return f"in an old format ({header.get('format')})"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"unreadable ({error})"
    try:
        size = os.path.getsize(path)
    except OSError:
        return "missing"
    if size != length * dtype.itemsize:
        return f"truncated ({size:,} bytes, {length * dtype.itemsize:,} expected)"
    crc, buffer = 0, bytearray(_READ)
    with open(path, "rb") as f:
        # readinto a reused buffer: a sequential read that adds nothing to resident memory.
        while n := f.readinto(buffer):
            crc = zlib.crc32(memoryview(buffer)[:n], crc)
    if crc != expected:
        return "corrupt (CRC-32 mismatch)"
    return None


def _map(path: Path, header: dict) -> np.ndarray:
    length = header["length"]
    if length == 0:
        return np.zeros(0, dtype=header["dtype"])
    return np.memmap(path, dtype=header["dtype"], mode="r", shape=(length,))

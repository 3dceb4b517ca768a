"""Tokenizers: the one place that owns the vocabulary.

Three kinds, all mapping text to integer ids (numpy ``int32`` arrays) and back:

- ``char``: Unicode code points, case kept, optional NFC/NFKC normalization,
  with a reserved unknown symbol for code points the training split never had.
- ``byte``: UTF-8 bytes; a fixed vocabulary of 256 bytes, so nothing is unknown.
- ``word``: words (whitespace-separated, optionally lower-cased, punctuation split off
  and numbers mapped to one token: :mod:`charlm.data.words`), the ``max_vocab`` most
  frequent kept (or those seen ``min_count`` times), ``<unk>`` for the rest, and ``<eol>``
  standing for each line break.

Every vocabulary begins with the special symbols (``<pad>`` first, id 0), so a
sampler can exclude them by id. A vocabulary is only ever built from the
training split, and a tokenizer is saved inside the model file via
:meth:`Tokenizer.get_config` / :func:`tokenizer_from_config`, so ids never
get re-mapped between training, sampling and fine-tuning.
"""

from __future__ import annotations

import collections
import itertools
import unicodedata

import numpy as np

from charlm.data.words import WordRules, raw_tokens
from charlm.errors import CharlmError

PAD = "<pad>"
UNK = "<unk>"
EOL = "<eol>"
DOC = "<doc>"

KINDS = ("char", "byte", "word")
NORMALIZATIONS = (None, "NFC", "NFKC")


class Tokenizer:
    """Base class: a fixed list of symbols; ``id`` is the index in ``vocabulary``."""

    kind = ""
    specials: tuple[str, ...] = ()

    def __init__(self, vocabulary):
        self.vocabulary = list(vocabulary)
        self.index = {symbol: i for i, symbol in enumerate(self.vocabulary)}
        if len(self.index) != len(self.vocabulary):
            raise CharlmError("tokenizer vocabulary has duplicate symbols")

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    @property
    def pad_id(self) -> int:
        return self.index[PAD]

    @property
    def unk_id(self) -> int | None:
        """Id of the unknown symbol, or None where nothing can be unknown."""
        return self.index.get(UNK)

    @property
    def special_ids(self) -> list[int]:
        """Ids that a sampler must never emit (padding, unknown, the document boundary, ...)."""
        return [self.index[s] for s in (*self.specials, DOC) if s in self.index and s != EOL]

    def encode(self, text: str) -> np.ndarray:
        raise NotImplementedError

    def decode(self, ids) -> str:
        raise NotImplementedError

    def count_unknown(self, text: str) -> int:
        """How many tokens of ``text`` fall outside the vocabulary."""
        if self.unk_id is None:
            return 0
        return int(np.count_nonzero(self.encode(text) == self.unk_id))

    def get_config(self) -> dict:
        return {"kind": self.kind, "vocabulary": self.vocabulary}

    def __repr__(self):
        return f"<{type(self).__name__} vocab_size={self.vocab_size}>"


class CharTokenizer(Tokenizer):
    """Unicode code points. ``normalization`` (None, "NFC" or "NFKC") is applied
    to every text before encoding, so that composed and decomposed forms of the
    same letter share one id."""

    kind = "char"
    specials = (PAD, UNK)

    def __init__(self, vocabulary, normalization=None):
        if normalization not in NORMALIZATIONS:
            raise CharlmError(f"unknown normalization {normalization!r}; use NFC or NFKC")
        super().__init__(vocabulary)
        self.normalization = normalization
        # Sorted code points of the ordinary symbols and their ids, for a
        # vectorised lookup with np.searchsorted (no Python loop per character).
        # DOC (between documents of a multi-file corpus, see charlm.data.tokenfile) is no code point.
        symbols = sorted((ord(s), i) for i, s in enumerate(self.vocabulary) if s not in self.specials and s != DOC)
        self._codepoints = np.array([c for c, _ in symbols], dtype=np.uint32)
        self._ids = np.array([i for _, i in symbols], dtype=np.int32)

    @classmethod
    def from_symbols(cls, symbols, normalization=None, documents: bool = False) -> CharTokenizer:
        """The vocabulary of the characters ``symbols``, in code point order, after the special
        symbols (``<doc>`` too for a corpus of several ``documents``)."""
        return cls([PAD, UNK, *([DOC] if documents else []), *sorted(symbols)], normalization)

    @classmethod
    def build(cls, text: str, normalization=None) -> CharTokenizer:
        """The vocabulary of ``text``: its distinct (normalized) characters."""
        return cls.from_symbols(set(normalize(text, normalization)), normalization)

    def encode(self, text: str) -> np.ndarray:
        text = normalize(text, self.normalization)
        codepoints = codepoints_of(text)
        if not len(self._codepoints):
            return np.full(len(codepoints), self.unk_id, dtype=np.int32)
        position = np.searchsorted(self._codepoints, codepoints)
        position = np.minimum(position, len(self._codepoints) - 1)
        known = self._codepoints[position] == codepoints
        return np.where(known, self._ids[position], self.unk_id).astype(np.int32)

    def decode(self, ids) -> str:
        vocab = self.vocabulary
        return "".join("\ufffd" if i == self.unk_id else ("" if i == self.pad_id else vocab[i]) for i in _ints(ids))

    def get_config(self) -> dict:
        return {**super().get_config(), "normalization": self.normalization}


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes: id = byte value + 1 (id 0 is padding). Never unknown."""

    kind = "byte"
    specials = (PAD,)

    def __init__(self, vocabulary=None):
        super().__init__(vocabulary or [PAD, *(f"<0x{b:02X}>" for b in range(256))])

    @classmethod
    def build(cls, text: str = "", documents: bool = False) -> ByteTokenizer:
        """The 256 bytes (and ``<doc>`` after them, for a corpus of several ``documents``)."""
        return cls([PAD, *(f"<0x{b:02X}>" for b in range(256)), *([DOC] if documents else [])])

    def encode(self, text: str) -> np.ndarray:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise CharlmError(
                f"text has a lone surrogate (U+{ord(text[error.start]):04X}) at character "
                f"{error.start} that UTF-8 cannot encode; remove it or read the file with --encoding-errors replace"
            ) from None
        return np.frombuffer(data, dtype=np.uint8).astype(np.int32) + 1

    def decode(self, ids) -> str:
        data = bytes(i - 1 for i in _ints(ids) if 0 < i <= 256)  # ids above 256: DOC
        return data.decode("utf-8", errors="replace")

    def count_chars(self, ids) -> int:
        """Characters in a run of byte ids: every byte that is not a UTF-8 continuation byte."""
        data = np.asarray(ids) - 1
        return int(np.count_nonzero((data & 0xC0) != 0x80))


class WordTokenizer(Tokenizer):
    """Words as :mod:`charlm.data.words` cuts them (whitespace, then the optional
    ``lowercase``, ``split_punctuation`` and ``numbers_token`` rules); each line break
    becomes ``<eol>``.

    Text round-trips up to those rules: words are re-joined with single spaces, and the
    joined text encodes to the same ids.
    """

    kind = "word"
    specials = (PAD, UNK, EOL)

    def __init__(self, vocabulary, lowercase: bool = False, split_punctuation: bool = False,
                 numbers_token: str | None = None):
        super().__init__(vocabulary)
        self.rules = WordRules(bool(lowercase), bool(split_punctuation), numbers_token or None)
        self._ids = _RawIds(self)

    @classmethod
    def from_counts(cls, counts, max_vocab: int | None = None, documents: bool = False,
                    min_count: int | None = None, **rules) -> WordTokenizer:
        """The special symbols (``<doc>`` too for a corpus of several ``documents``), then the
        words of ``counts`` (word -> count) seen at least ``min_count`` times, most frequent
        first (ties in alphabetical order), at most ``max_vocab`` symbols in all. ``rules``:
        the :class:`charlm.data.words.WordRules` options."""
        specials = [*cls.specials, *([DOC] if documents else [])]
        words = sorted((w for w, n in counts.items() if w not in (*cls.specials, DOC) and n >= (min_count or 1)),
                       key=lambda w: (-counts[w], w))
        if max_vocab is not None:
            words = words[: max(0, max_vocab - len(specials))]
        return cls([*specials, *words], **rules)

    @classmethod
    def build(cls, text: str, max_vocab: int | None = None, min_count: int | None = None,
              **rules) -> WordTokenizer:
        """The ``max_vocab`` most frequent words of ``text`` (seen ``min_count`` times or more)."""
        counts = collections.Counter(WordRules(**rules).split(text))
        return cls.from_counts(counts, max_vocab, min_count=min_count, **rules)

    def split(self, text: str) -> list[str]:
        """The words of ``text``, ``<eol>`` for each line break."""
        return self.rules.split(text)

    def word_ids(self, raw: str) -> tuple[int, ...]:
        """The ids of the words of one raw token (see :mod:`charlm.data.words`)."""
        index, unk = self.index, self.unk_id
        return tuple(index.get(word, unk) for word in self.rules.words(raw))

    def encode(self, text: str) -> np.ndarray:
        raws = raw_tokens(text)
        if not raws:
            return np.zeros(0, np.int32)
        return np.fromiter(itertools.chain.from_iterable(map(self._ids.__getitem__, raws)), np.int32)

    def decode(self, ids) -> str:
        out = []
        for i in _ints(ids):
            if i == self.pad_id:
                continue
            word = self.vocabulary[i]
            if word == EOL:
                out.append("\n")
            else:
                if out and out[-1] != "\n":
                    out.append(" ")
                out.append(word)
        return "".join(out)

    def get_config(self) -> dict:
        return {**super().get_config(), "lowercase": self.rules.lowercase,
                "split_punctuation": self.rules.split_punctuation, "numbers_token": self.rules.numbers_token}


class _RawIds(dict):
    """Raw token -> its word ids, worked out on first sight; emptied when it grows past
    :data:`_CACHED_RAW` entries, so that reading a large text keeps memory bounded."""

    def __init__(self, tokenizer: WordTokenizer):
        super().__init__()
        self.tokenizer = tokenizer

    def __missing__(self, raw: str) -> tuple[int, ...]:
        if len(self) >= _CACHED_RAW:
            self.clear()
        value = self[raw] = self.tokenizer.word_ids(raw)
        return value


_CACHED_RAW = 1 << 20


def build_tokenizer(kind: str, text: str, normalization=None, max_vocab=None, min_count=None, **rules) -> Tokenizer:
    """A new tokenizer of ``kind`` whose vocabulary comes from ``text`` (the training split);
    ``max_vocab``, ``min_count`` and ``rules`` (:class:`charlm.data.words.WordRules`) are for words."""
    if kind == "char":
        return CharTokenizer.build(text, normalization)
    if kind == "byte":
        return ByteTokenizer.build(text)
    if kind == "word":
        return WordTokenizer.build(text, max_vocab, min_count, **rules)
    raise CharlmError(f"unknown tokenizer {kind!r}; choose one of {', '.join(KINDS)}")


def tokenizer_from_config(config: dict) -> Tokenizer:
    """The tokenizer that :meth:`Tokenizer.get_config` described."""
    kind = config.get("kind")
    if kind == "char":
        return CharTokenizer(config["vocabulary"], config.get("normalization"))
    if kind == "byte":
        return ByteTokenizer(config["vocabulary"])
    if kind == "word":
        # Files written before the word options existed read with them off.
        return WordTokenizer(config["vocabulary"], config.get("lowercase", False),
                             config.get("split_punctuation", False), config.get("numbers_token"))
    raise CharlmError(f"unknown tokenizer kind {kind!r} in the model file")


def normalize(text: str, normalization) -> str:
    """``text`` in the Unicode normal form ``normalization`` (None: as it is)."""
    return unicodedata.normalize(normalization, text) if normalization else text


def codepoints_of(text: str) -> np.ndarray:
    """The code points of ``text`` as uint32, lone surrogates included."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _ints(ids):
    return [int(i) for i in np.asarray(ids).reshape(-1)]

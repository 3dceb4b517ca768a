"""How the word tokenizer cuts text into words: the rules, and fast ways to apply them.

Text is first cut at whitespace into *raw tokens*, each line break standing for one
``<eol>``. Every rule below then looks at one raw token alone, so a whole text (or any
piece of it that ends at whitespace) gives the same words, and the words of a raw token can
be worked out once and looked up from then on.

``lowercase``
    ``str.lower``: "The" and "the" are one word.
``split_punctuation``
    Punctuation and symbols (Unicode categories P* and S*: ``. , ; : ! ? " ' ( ) [ ] - / $ %
    & @``, dashes, quotes, emoji ...) become words of their own, the conventions of the
    tokenized text of the Linzen and Gulordava agreement sets and of WikiText:
    "The keys are old." -> "The keys are old .". Exceptions, so that text already
    tokenized that way keeps its words:

    - a raw token made of punctuation alone stays whole ("...", "--", "@-@", "''");
    - a number keeps its separators: "3,000" and "1.5" are one word (digits, then ``.`` or
      ``,`` and more digits);
    - the clitic "n't" is one word and the word before it another ("hasn't" -> "has n't",
      "can't" -> "ca n't"), and an apostrophe followed by letters starts a word
      ("cat's" -> "cat 's", "they're" -> "they 're"; WikiText's "don 't" stays);
    - a tag in angle brackets stays whole ("<unk>", "<eos>").

    Everything else that is neither whitespace nor punctuation, combining marks included,
    is a letter of a word: "naïve", "日本語" and "x²" are words, and so is "U" of "U.S."
    ("U . S ."; abbreviations are not recognised).
``numbers_token``
    A word made of decimal digits (of any script), with ``.`` or ``,`` between digit
    groups, becomes this token ("3,000", "1.5", "42" -> "<num>"; "1990s" stays).
    Without ``split_punctuation`` only a whole raw token can be a number ("3." is not).

The rules apply in that order (lower case first). Each word they make gives back itself
when read again, so decoded text (words joined by spaces) encodes to the same words.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from dataclasses import dataclass

EOL = "<eol>"
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_EOL_SPACED = f" {EOL} "
# A string no whitespace split can produce: the raw token that stands for a document boundary.
DOC_RAW = "\n"


@functools.cache
def _punctuation() -> str:
    """A regular-expression class body of every punctuation (P*) and symbol (S*) character."""
    codes = [c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c))[0] in "PS"]
    ranges, start = [], 0
    for k in range(1, len(codes) + 1):
        if k == len(codes) or codes[k] != codes[k - 1] + 1:
            first, last = chr(codes[start]), chr(codes[k - 1])
            ranges.append(re.escape(first) + ("-" + re.escape(last) if last != first else ""))
            start = k
    return "".join(ranges)


@functools.cache
def _splitters() -> tuple[re.Pattern, re.Pattern]:
    """(punctuation alone, the words of a raw token), compiled on first use (building the
    class takes a tenth of a second, which ``import charlm`` should not pay)."""
    p = _punctuation()
    letter = rf"[^\s{p}]"
    nt = rf"[nN]['’][tT](?!{letter})"
    token = re.compile(
        rf"<\w+>"  # a tag: <unk>
        rf"|\d+(?:[.,]\d+)+"  # a number with separators: 3,000  1.5
        rf"|{nt}"  # n't
        rf"|['’]{letter}+"  # 's 're 't
        rf"|(?:(?!{nt}){letter})+"  # a word, up to an n't
        rf"|."  # one punctuation character
    )
    return re.compile(rf"[{p}]+"), token


@dataclass(frozen=True)
class WordRules:
    """The word tokenizer's options (see the module docstring)."""

    lowercase: bool = False
    split_punctuation: bool = False
    numbers_token: str | None = None

    @property
    def plain(self) -> bool:
        """True when a raw token is a word as it is (whitespace splitting only)."""
        return not (self.lowercase or self.split_punctuation or self.numbers_token)

    def words(self, raw: str) -> list[str]:
        """The words of one raw token (no whitespace in it)."""
        if self.lowercase:
            raw = raw.lower()
        if self.split_punctuation and not raw.isalnum():  # (letters and digits only: one word)
            alone, token = _splitters()
            parts = [raw] if alone.fullmatch(raw) else token.findall(raw)
        else:
            parts = [raw]
        if self.numbers_token:
            parts = [self.numbers_token if _NUMBER.fullmatch(p) else p for p in parts]
        return parts

    def split(self, text: str) -> list[str]:
        """The words of ``text``, ``<eol>`` for each line break."""
        raws = raw_tokens(text)
        if self.plain:
            return raws
        return [word for raw in raws for word in self.words(raw)]

    def check_token(self, token: str) -> str | None:
        """Why ``token`` cannot be the numbers token under these rules, or None."""
        if not token or any(c.isspace() for c in token):
            return "must be one word without spaces"
        if self.words(token) != [token]:
            return "must stay one word, as it is, under the other word options"
        return None


def raw_tokens(text: str) -> list[str]:
    """``text`` cut at whitespace, ``<eol>`` for each line break (the text ``<eol>`` also is one)."""
    return text.replace("\n", _EOL_SPACED).split()


class RawIndex(dict):
    """Raw token -> an id in the order first seen (0: :data:`DOC_RAW`); ``strings`` lists them."""

    def __init__(self):
        super().__init__()
        self.strings: list[str] = []
        self.__missing__(DOC_RAW)  # id 0

    def __missing__(self, raw: str) -> int:
        value = self[raw] = len(self.strings)
        self.strings.append(raw)
        return value

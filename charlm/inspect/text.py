"""The text an inspection command reads: files, a string, or by default the held-out end of
the bundled corpus (text the default model never trained on)."""

from __future__ import annotations

from dataclasses import dataclass

from charlm.config import TrainConfig
from charlm.data.corpus import read_corpus, split_text
from charlm.data.prepare import default_corpus
from charlm.errors import CharlmError
from charlm.inspect.activations import text_pieces


@dataclass(frozen=True)
class Text:
    """A text to inspect and where it came from."""

    text: str
    source: str  # the files, "--text", or the bundled corpus's held-out part
    tokens: int
    unknown: int  # tokens outside the model's vocabulary


def read_text(lm, files=(), text: str | None = None, encoding_errors: str = "strict",
              max_tokens: int | None = None) -> Text:
    """The text of ``files`` or ``text`` (not both), or the held-out end of the bundled
    corpus, cut to its first ``max_tokens`` tokens; one-line errors for an empty text."""
    if files and text is not None:
        raise CharlmError("give either --file or --text, not both")
    if text is not None:
        source = "--text"
    elif files:
        corpus = read_corpus(list(files), encoding_errors)
        text, source = corpus.text, ", ".join(corpus.files)
    else:
        corpus = default_corpus()
        text = split_text(corpus.read_text(encoding="utf-8"), TrainConfig().val_fraction)[1]
        source = f"the held-out end of {corpus.name}"
    if max_tokens is not None:
        text = first_tokens(lm.tokenizer, text, max_tokens)
    if not text:
        raise CharlmError("the text to inspect is empty")
    ids = lm.tokenizer.encode(text)
    unknown = int((ids == lm.tokenizer.unk_id).sum()) if lm.tokenizer.unk_id is not None else 0
    return Text(text, source, len(ids), unknown)


def first_tokens(tokenizer, text: str, n: int) -> str:
    """The start of ``text`` that holds its first ``n`` tokens (a byte model's: the whole
    characters within its first ``n`` bytes)."""
    pieces = text_pieces(tokenizer, text)
    cut = min(n, len(pieces))
    while 0 < cut < len(pieces) and pieces[cut] == "":  # never split a character's bytes
        cut -= 1
    if tokenizer.kind != "word":
        return "".join(pieces[:cut])
    out = []
    for piece in pieces[:cut]:
        out.append(piece if piece == "\n" or not out or out[-1] == "\n" else " " + piece)
    return "".join(out)

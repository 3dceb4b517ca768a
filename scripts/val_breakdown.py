"""Where a character model's validation loss goes on a text of speeches: speeches by speakers the
training part names against speakers it never names, and speaker lines against the speech.

    python scripts/val_breakdown.py MODEL [--corpus FILE] [--val-fraction 0.05] [--json]

The text is laid out as tiny-shakespeare is: a speaker line (a name alone on a line, starting with
a capital and ending in a colon, after a blank line or at the start), then the speech, then a blank
line. The validation part is the cut ``charlm train --val-fraction`` makes; it is scored as
``charlm eval`` reads it (one stream, every character scored) and each character's loss goes to one
cell: whose speech it belongs to (a speaker named in the training part, one it never names, or
nobody yet: the text before the first speaker line) and which line (the speaker line or the speech;
a line's line break counts with it). The cells' character-weighted mean is the whole text's loss.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from bench_quality import CORPUS, VAL_FRACTION
from charlm.config import StreamSettings
from charlm.data.corpus import read_corpus, split_text
from charlm.errors import CharlmError
from charlm.evaluate import text_logprobs
from charlm.nn.lm import load

SPEAKER_LINE = re.compile(r"[A-Z][A-Za-z' .,-]*:")
GROUPS = ("seen", "new", "none")  # speaker named in training, never named there, no speaker line yet
LINES = ("speaker line", "speech")


def speakers(text: str) -> set[str]:
    """The names of the speaker lines of ``text``."""
    return {speaker for _, speaker, _ in _lines(text) if speaker is not None}


def _lines(text: str):
    """``(line, speaker, is_speaker_line)`` for each line of ``text`` (split on ``\\n``): the speaker
    whose speech the line belongs to (None before the first speaker line)."""
    speaker, previous_blank = None, True
    for line in text.split("\n"):
        is_speaker_line = previous_blank and SPEAKER_LINE.fullmatch(line) is not None
        if is_speaker_line:
            speaker = line[:-1]
        yield line, speaker, is_speaker_line
        previous_blank = not line.strip()


def character_cells(text: str, seen: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(group, line)``: for each character of ``text``, the index in :data:`GROUPS` of whose
    speech it belongs to and the index in :data:`LINES` of the kind of line it is on; both (len(text),)."""
    group, kind = [], []
    for line, speaker, is_speaker_line in _lines(text):
        width = len(line) + 1  # the line break that ends the line
        group += [2 if speaker is None else 0 if speaker in seen else 1] * width
        kind += [0 if is_speaker_line else 1] * width
    n = len(text)  # the last line has no line break after it
    return np.array(group[:n], dtype=np.int64), np.array(kind[:n], dtype=np.int64)


def breakdown(nats: np.ndarray, group: np.ndarray, kind: np.ndarray) -> list[dict]:
    """One row per non-empty cell: ``group``, ``lines``, ``characters``, ``nats`` (mean nats per
    character) and ``share_of_loss``; ``nats`` (N,) is each character's loss, NaN where unscored."""
    scored = ~np.isnan(nats)
    total = nats[scored].sum()
    rows = []
    for g, group_name in enumerate(GROUPS):
        for k, line_name in enumerate(LINES):
            cell = scored & (group == g) & (kind == k)
            if cell.any():
                rows.append({"group": group_name, "lines": line_name, "characters": int(cell.sum()),
                             "nats": float(nats[cell].mean()), "share_of_loss": float(nats[cell].sum() / total)})
    return rows


def analyse(model_path, corpus: Path, val_fraction: float) -> dict:
    """The validation text's loss under the model at ``model_path``, whole and by cell."""
    train, val = split_text(read_corpus([corpus]).text, val_fraction)
    lm = load(model_path)
    ids, logp = text_logprobs(lm, val, StreamSettings())
    if len(ids) != len(val):
        raise CharlmError(f"{len(ids)} tokens for {len(val)} characters: the breakdown needs one token a "
                          "character (a char model, or a byte model on ASCII text)")
    group, kind = character_cells(val, speakers(train))
    nats = -np.asarray(logp, dtype=np.float64)
    return {"model": str(model_path), "corpus": str(corpus), "val_fraction": val_fraction,
            "characters": len(val), "nats": float(np.nanmean(nats)), "cells": breakdown(nats, group, kind)}


def print_table(result: dict):
    print(f"{result['corpus']}: the last {result['val_fraction']:.0%} ({result['characters']:,} characters), "
          f"{result['nats']:.4f} nats/char under {result['model']}")
    print(f"{'speaker':8s} {'lines':13s} {'characters':>10s} {'share':>6s} {'nats/char':>9s} {'of loss':>7s}")
    for row in result["cells"]:
        print(f"{row['group']:8s} {row['lines']:13s} {row['characters']:>10,} "
              f"{row['characters'] / result['characters']:>6.1%} {row['nats']:>9.4f} {row['share_of_loss']:>7.1%}")
    print("speaker: seen, named by a speaker line of the training part; new, never named there; "
          "none, before the first speaker line")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--val-fraction", type=float, default=VAL_FRACTION)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 0 < args.val_fraction < 1:
        sys.exit(f"val_breakdown: --val-fraction must lie between 0 and 1, got {args.val_fraction}")
    try:
        result = analyse(args.model, args.corpus, args.val_fraction)
    except CharlmError as error:
        sys.exit(f"val_breakdown: {error}")
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)


if __name__ == "__main__":
    main()

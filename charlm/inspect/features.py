"""Units that track something in the text: each unit's correlation with per-token features.

The features are computed from the text itself, token by token (the value after reading the
token):

- ``position_in_word``: tokens since the word began (1 at its first character; 0 on
  whitespace). Character and byte models only: a word model's tokens are words.
- ``position_in_line``: tokens since the last line break (0 on the line break itself).
- ``inside_quotes``: 1 between an opening and a closing double quote (the quote
  characters included), else 0.
- ``bracket_depth``: how many ``(``, ``[`` or ``{`` are open.
- ``word_in_sentence``: words since the sentence began (a sentence ends at ``.``, ``!``,
  ``?`` or a line break), 0 before its first word.

A user may add columns of their own: a TSV with a header and one row per token. Each unit's
Pearson correlation with each feature is accumulated window by window over the text, so a long
text costs no more memory than a short one. A feature that does not vary has no correlation
(reported as None).
"""

from __future__ import annotations

import csv

import numpy as np

from charlm.errors import CharlmError
from charlm.inspect.activations import read_windows, text_pieces

SENTENCE_END = ".!?"
OPENING, CLOSING = "([{", ")]}"


def text_features(tokenizer, text: str) -> dict:
    """The built-in features of ``text``'s tokens: name -> (N,) float64 (see the module docstring)."""
    pieces = text_pieces(tokenizer, text)
    word_model = tokenizer.kind == "word"
    names = ["position_in_line", "inside_quotes", "bracket_depth", "word_in_sentence"]
    if not word_model:
        names.insert(0, "position_in_word")
    rows = []
    in_word = in_line = depth = words = 0
    quoted = False
    for piece in pieces:
        if piece == "":  # a byte model's continuation byte: the same character as the byte before
            rows.append(rows[-1])
            continue
        if piece == "\n":
            in_line = words = 0
        else:
            in_line += 1
        if word_model:
            words += piece != "\n"
        elif piece.isspace():
            in_word = 0
        else:
            words += in_word == 0
            in_word += 1
        quote = '"' in piece
        if quote:
            quoted = not quoted
        depth = max(0, depth + sum(map(piece.count, OPENING)) - sum(map(piece.count, CLOSING)))
        row = {"position_in_line": in_line, "inside_quotes": float(quoted or quote), "bracket_depth": depth,
               "word_in_sentence": words}
        if not word_model:
            row["position_in_word"] = in_word
        rows.append(row)
        if piece[-1] in SENTENCE_END:
            words = 0
    return {name: np.array([row[name] for row in rows], np.float64) for name in names}


def read_feature_file(path, tokens: int) -> dict:
    """Per-token feature columns from a TSV with a header and ``tokens`` rows; one-line errors."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t"))
    except (OSError, UnicodeDecodeError) as error:
        raise CharlmError(f"cannot read the feature file {path}: {getattr(error, 'strerror', None) or error}") from None
    if not rows or not rows[0]:
        raise CharlmError(f"the feature file {path} is empty; it needs a header and one row per token")
    header, body = rows[0], rows[1:]
    if len(body) != tokens:
        raise CharlmError(f"the feature file {path} has {len(body)} rows but the text has {tokens} tokens; "
                          "give one row per token")
    columns = {}
    for j, name in enumerate(header):
        try:
            columns[name] = np.array([float(row[j]) for row in body])
        except (ValueError, IndexError):
            raise CharlmError(f"the feature file {path}: column {name!r} is not a number on every row") from None
    return columns


def feature_correlations(lm, text: str, names=("h",), extra: dict | None = None, top: int = 10) -> dict:
    """Each unit's Pearson correlation with each feature of ``text`` (the built-in ones and the
    columns of ``extra``, name -> (N,) values), for the values ``names`` of every layer of
    ``lm``. Returns a JSON-ready dict: ``tokens``, ``features`` (their names), and ``by_feature``:
    per feature, per value name and layer, the correlation of every unit (None where either
    side does not vary) and the ``top`` units by |r| as ``[layer (1-based), unit, r]``."""
    ids = lm.tokenizer.encode(text)
    features = {**text_features(lm.tokenizer, text), **(extra or {})}
    names_f = list(features)
    y = np.stack([features[name] for name in names_f], axis=1)  # (N, F)
    layers, hidden = lm.config.layers, lm.config.hidden
    # Per value name: (layers, [Σx, Σx², Σy, Σy², Σxy], features, units).
    sums = {name: np.zeros((layers, 5, len(names_f), hidden)) for name in names}
    for window in read_windows(lm, ids, names=names):
        yw = y[window.at]  # (rows, F)
        for layer, values in enumerate(window.values):
            for name in names:
                x = values[name].astype(np.float64)  # (rows, H)
                s = sums[name][layer]
                s[0] += x.sum(0)
                s[1] += (x * x).sum(0)
                s[2] += yw.sum(0)[:, None]
                s[3] += (yw * yw).sum(0)[:, None]
                s[4] += yw.T @ x
    n = len(ids)
    by_feature = {}
    for f, feature in enumerate(names_f):
        entry = {}
        ranked = []
        for name in names:
            per_layer = []
            for layer in range(layers):
                sx, sxx, sy, syy, sxy = sums[name][layer][:, f]  # (H,) each
                cov = sxy / n - (sx / n) * (sy / n)
                var_x, var_y = sxx / n - (sx / n) ** 2, syy / n - (sy / n) ** 2
                with np.errstate(invalid="ignore", divide="ignore"):
                    r = cov / np.sqrt(var_x * var_y)
                r[(var_x <= 1e-12) | (var_y <= 1e-12)] = np.nan
                per_layer.append([None if np.isnan(v) else float(v) for v in r])
                ranked += [(abs(v), layer + 1, unit, float(v), name) for unit, v in enumerate(r) if not np.isnan(v)]
            entry[name] = per_layer
        ranked.sort(key=lambda item: -item[0])
        by_feature[feature] = {"correlations": entry,
                               "top": [{"value": name, "layer": layer, "unit": unit, "r": r}
                                       for _, layer, unit, r, name in ranked[:top]]}
    return {"tokens": n, "features": names_f, "by_feature": by_feature}

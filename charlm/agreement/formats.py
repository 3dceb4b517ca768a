"""Reading agreement test sets: TSV suites, BLiMP JSONL, and the Linzen/Gulordava layout.

Every reader turns a file into :class:`Item` s plus :class:`Skip` records for
what it could not use; nothing is dropped without a record. An item is either

- a *prefix item*: ``prefix`` then the ``correct`` or the ``wrong`` form, then
  ``after`` (the rest of the sentence, starting with its separator, e.g.
  ``" on the table ."``); or
- a *sentence pair*: ``correct`` and ``wrong`` are whole sentences (``prefix`` is None).

Formats (``--format auto`` picks by extension, then by the first line; a
``.json`` file by its structure):

``tsv``
    Tab-separated (no quoting) or comma-separated (quoted fields as the csv
    module reads them), told apart by the extension (.tsv, .csv), else by the
    header line; header first, a UTF-8 byte-order mark and CRLF line ends
    allowed. Either ``prefix``, ``correct``, ``wrong`` (optional ``suffix``,
    joined to the form with one space) or ``sentence_good``, ``sentence_bad``;
    optional ``condition``, ``n_attractors`` (an integer), ``subj_number``
    (``sg``/``pl``, also ``sing``/``plur``) and ``subject_index`` (the 0-based
    index, among the prefix's blank-separated words, of the subject's head
    noun; prefix items only). In these four columns an empty
    cell, ``NA``, ``N/A``, ``NaN``, ``None``, ``null`` or ``-`` (any case) means
    unknown: the item is scored and falls in the "unknown" group of that
    column's breakdown.
``blimp``
    JSON lines with ``sentence_good``, ``sentence_bad`` and, where the pair
    differs in one word after a shared prefix, ``one_prefix_prefix``,
    ``one_prefix_word_good``, ``one_prefix_word_bad``; the paradigm (``UID``) is
    the condition.
``gulordava``
    ``STEM.text`` (one tokenized sentence a line, ending in ``<eos>``),
    ``STEM.eval`` (the 0-based index of the target word) and ``STEM.gold``,
    tab-separated, in either of two layouts, told apart line by line by the
    number of fields:

    - Gulordava et al.'s, 8 or more fields: field 6 the correct form's features
      (``Number=Sing|Plur``), fields 7 and 8 the correct and wrong forms. An
      optional ``STEM.tab`` adds the condition (``original``/``nonce``), the
      number of attractors and, where the agreement controller is a noun, the
      subject's index (``len_prefix`` - ``len_context``).
    - Linzen et al.'s as colorlessgreenRNNs ships it, 4 fields: the target's
      index (as in ``.eval``), the correct form, the wrong form, the number of
      attractors. The subject's number is read off the correct form where
      English morphology gives it (:func:`english_verb_number`).

    The prefix is cut at the target index: in nonce sentences the word there
    is neither form.
``syntaxgym``
    A SyntaxGym suite, one JSON object a file: read by
    :mod:`charlm.agreement.syntaxgym` into :attr:`Loaded.suites`, not items.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from charlm.agreement.skips import Skip, describe_skips  # noqa: F401  (read from here too)
from charlm.agreement.syntaxgym import looks_like_suite, read_suite

FORMATS = ("auto", "tsv", "blimp", "gulordava", "syntaxgym")
METHODS = ("sentence", "prefix")
GULORDAVA_SUFFIXES = (".text", ".gold", ".eval", ".tab")
# Annotation cells that mean "unknown", compared in lower case after stripping blanks.
UNKNOWN_VALUES = frozenset({"", "na", "n/a", "nan", "none", "null", "-"})
_NUMBERS = {"sg": "sg", "sing": "sg", "singular": "sg", "pl": "pl", "plur": "pl", "plural": "pl"}


@dataclass(frozen=True)
class Item:
    """One minimal pair, with where it came from and what it tests."""

    source: str  # the file (or Gulordava stem) it was read from
    line: int  # its line in that file, 1-based
    correct: str  # the correct form, or the good sentence of a pair
    wrong: str  # the wrong form, or the bad sentence
    prefix: str | None = None  # None: a sentence pair
    after: str = ""  # prefix items: the text after the form, with its leading separator
    condition: str | None = None
    n_attractors: int | None = None
    subj_number: str | None = None  # "sg" or "pl": the number the correct form agrees with
    # prefix items: the 0-based index of the subject's head noun among prefix.split()
    subject_index: int | None = None
    # BLiMP's one-prefix reading of a pair, where the file gives one: (prefix, good, bad, after)
    one_prefix: tuple | None = None

    @property
    def is_pair(self) -> bool:
        return self.prefix is None


@dataclass
class Loaded:
    """What :func:`load` read: the agreement items, the skips, the files behind them,
    and the SyntaxGym suites (:class:`charlm.agreement.syntaxgym.Suite`)."""

    items: list
    skips: list
    files: list
    suites: list = field(default_factory=list)
    suite_skips: list = field(default_factory=list)  # items of the suites that cannot be scored


def load(paths, fmt: str = "auto", method: str = "sentence") -> Loaded:
    """Read every agreement file named by ``paths`` (files, Gulordava stems or
    directories). ``method`` ``prefix`` turns sentence pairs that carry a
    one-prefix reading into prefix items. Unreadable files and malformed rows
    become :class:`Skip` records; items that no model could score (an empty
    form, the same form twice) too."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")

    items, skips, files, suites, suite_skips = [], [], [], [], []
    for path, kind in _expand(paths, fmt, skips):
        files.append(str(path))
        reader = {"tsv": read_tsv, "blimp": read_blimp, "gulordava": read_gulordava, "syntaxgym": read_suite}[kind]
        try:
            found, skipped = reader(path)
        except (OSError, UnicodeDecodeError) as error:
            skips.append(Skip(str(path), f"cannot read the file ({_short(error)})", 0))
            continue
        if kind == "syntaxgym":
            suites.extend(found)
            # A file that is no suite at all is a skipped file like any other.
            skips.extend(s for s in skipped if not s.count)
            suite_skips.extend(s for s in skipped if s.count)
            continue
        skips.extend(skipped)
        for item in found:
            if method == "prefix" and item.one_prefix:
                prefix, good, bad, after = item.one_prefix
                item = replace(item, prefix=prefix, correct=good, wrong=bad, after=after)
            reason = unscorable(item)
            if reason:
                skips.append(Skip(item.source, reason, 1, item.line))
            else:
                items.append(item)
    return Loaded(items, skips, files, suites, suite_skips)


def unscorable(item: Item) -> str | None:
    """Why no model could score ``item`` (None if it can be scored)."""
    if not item.correct.strip() or not item.wrong.strip():
        return "empty form"
    if item.correct == item.wrong:
        return "correct and wrong forms are the same"
    return None


def detect(path: Path) -> str | None:
    """The format of one file by its extension, else by its first line; None if unknown."""
    suffix = path.suffix.lower()
    if suffix in GULORDAVA_SUFFIXES:
        return "gulordava"
    if suffix == ".jsonl":
        return "blimp"
    if suffix == ".json":
        return _json_kind(path)
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            first = next((line for line in f if line.strip()), "")
    except OSError:
        return None
    if first.lstrip().startswith("{"):
        return _json_kind(path) or "blimp"
    first = first.rstrip("\r\n")
    delimiter = _delimiter(path, first)
    try:
        cells = next(csv.reader([first], delimiter=delimiter,
                                quoting=csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE), [])
    except csv.Error:
        return None
    header = {cell.strip() for cell in cells}
    if {"prefix", "correct", "wrong"} <= header or {"sentence_good", "sentence_bad"} <= header:
        return "tsv"
    return None


def _json_kind(path: Path) -> str | None:
    """A JSON file's format: ``syntaxgym`` for a suite, ``blimp`` for JSON lines whose
    first record has sentence_good and sentence_bad, else None."""

    if looks_like_suite(path):
        return "syntaxgym"
    try:
        with open(path, encoding="utf-8-sig") as f:
            first = next((line for line in f if line.strip()), "")
        record = json.loads(first)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return "blimp" if isinstance(record, dict) and {"sentence_good", "sentence_bad"} <= record.keys() else None


def _expand(paths, fmt, skips):
    """(path, format) for every data set named; directories give their .tsv, .jsonl
    and Gulordava files, sorted; a Gulordava set appears once, as its stem."""
    seen = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            candidates = [p for p in found if p.suffix.lower() in (".tsv", ".csv", ".jsonl", ".json",
                                                                  *GULORDAVA_SUFFIXES)]
            if not candidates:
                skips.append(Skip(str(path), "the directory holds no .tsv, .csv, .jsonl, .json or "
                                             ".gold/.text/.eval files", 0))
        elif path.exists():
            candidates = [path]
        elif any(path.with_name(path.name + s).exists() for s in GULORDAVA_SUFFIXES):
            candidates = [path]  # a Gulordava stem
        else:
            skips.append(Skip(str(path), "no such file", 0))
            continue
        for candidate in candidates:
            kind = fmt if fmt != "auto" else ("gulordava" if not candidate.exists() else detect(candidate))
            if kind is None and candidate.suffix.lower() == ".json":
                skips.append(Skip(str(candidate), "unknown format: neither a SyntaxGym suite (an object with meta, "
                                                  "region_meta, predictions and items) nor BLiMP JSON lines", 0))
                continue
            if kind is None:
                skips.append(Skip(str(candidate), "unknown format (use --format tsv, blimp, gulordava or syntaxgym)",
                                  0))
                continue
            if kind == "gulordava":
                candidate = _stem(candidate)
            if candidate not in seen:
                seen.add(candidate)
                yield candidate, kind


def _stem(path: Path) -> Path:
    return path.with_suffix("") if path.suffix.lower() in GULORDAVA_SUFFIXES else path


def read_tsv(path) -> tuple[list, list]:
    """Items and skips of a TSV or CSV suite (see the module docstring)."""
    path = Path(path)
    source = str(path)
    with open(path, encoding="utf-8-sig", newline="") as f:
        text = f.read()
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = _delimiter(path, first)
    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
    numbered, previous = [], 0
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
        for fields in reader:
            start, previous = previous + 1, reader.line_num
            if any(field.strip() for field in fields):
                numbered.append((start, fields))
    except csv.Error as error:
        return [], [Skip(source, f"cannot read the file as {'CSV' if delimiter == ',' else 'TSV'} "
                                 f"(line {previous + 1}: {_short(error)})", max(len(numbered) - 1, 0))]
    if not numbered:
        return [], [Skip(source, "the file is empty", 0)]
    header_no, header = numbered[0]
    header = [name.strip() for name in header]
    columns = {name: i for i, name in enumerate(header)}
    if {"prefix", "correct", "wrong"} <= columns.keys():
        pair = False
    elif {"sentence_good", "sentence_bad"} <= columns.keys():
        pair = True
    else:
        return [], [Skip(source, "the header has neither prefix/correct/wrong nor sentence_good/sentence_bad "
                                 f"columns (line {header_no})", len(numbered) - 1)]
    items, skips = [], []
    for number, fields in numbered[1:]:
        if len(fields) != len(header):
            skips.append(Skip(source, f"malformed row: {len(fields)} columns where the header has {len(header)}",
                              1, number))
            continue
        row = dict(zip(header, fields))
        extra, problem = _annotations(row)
        if problem:
            skips.append(Skip(source, problem, 1, number))
            continue
        if pair:
            items.append(Item(source, number, row["sentence_good"], row["sentence_bad"], **extra))
        else:
            suffix = row.get("suffix", "")
            after = " " + suffix if suffix else ""
            items.append(Item(source, number, row["correct"], row["wrong"], row["prefix"], after, **extra))
    return items, skips


def _delimiter(path: Path, header: str) -> str:
    """"," for a .csv file, a tab for a .tsv file; otherwise whichever the header line
    uses (a tab where it has one)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return ","
    if suffix == ".tsv" or "\t" in header:
        return "\t"
    return "," if "," in header else "\t"


def is_unknown(value) -> bool:
    """Whether an annotation cell says "no value": empty, or NA, N/A, NaN, None, null
    or "-" in any case, blanks around it ignored."""
    return value is None or value.strip().lower() in UNKNOWN_VALUES


def _annotations(row: dict) -> tuple[dict, str | None]:
    """condition, n_attractors, subj_number, subject_index of a row, or a reason it is malformed;
    a cell that :func:`is_unknown` leaves the value unknown (None)."""
    condition = row.get("condition")
    extra = {"condition": None if is_unknown(condition) else condition}
    attractors = row.get("n_attractors")
    if not is_unknown(attractors):
        attractors = attractors.strip()
        try:
            extra["n_attractors"] = int(attractors)
        except ValueError:
            return extra, f"n_attractors is not an integer: {attractors[:20]!r}"
        if extra["n_attractors"] < 0:
            return extra, "n_attractors is negative"
    number = row.get("subj_number")
    if not is_unknown(number):
        number = number.strip()
        if number.lower() not in _NUMBERS:
            return extra, f"subj_number must be sg or pl, got {number[:20]!r}"
        extra["subj_number"] = _NUMBERS[number.lower()]
    index = row.get("subject_index")
    if not is_unknown(index):
        index = index.strip()
        words = len(row.get("prefix", "").split())
        if not _is_count(index) or int(index) >= words:
            return extra, f"subject_index must be a word index of the prefix (0 to {words - 1}), got {index[:20]!r}"
        extra["subject_index"] = int(index)
    return extra, None


def _is_count(text: str) -> bool:
    """Whether ``text`` is a non-negative integer in ASCII digits ("²" is a digit to str.isdigit)."""
    return text.isascii() and text.isdigit()


def read_blimp(path) -> tuple[list, list]:
    """Items and skips of a BLiMP JSON-lines file (see the module docstring)."""
    path = Path(path)
    source = str(path)
    items, skips = [], []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            skips.append(Skip(source, "not a JSON object", 1, number))
            continue
        if not isinstance(record, dict):
            skips.append(Skip(source, "not a JSON object", 1, number))
            continue
        good, bad = record.get("sentence_good"), record.get("sentence_bad")
        if not isinstance(good, str) or not isinstance(bad, str):
            skips.append(Skip(source, "no sentence_good/sentence_bad strings", 1, number))
            continue
        condition = record.get("UID") if isinstance(record.get("UID"), str) else None
        items.append(Item(source, number, good, bad, condition=condition or path.stem,
                          one_prefix=_one_prefix(record, good)))
    return items, skips


def _one_prefix(record: dict, good: str) -> tuple | None:
    """(prefix, good word, bad word, after) from BLiMP's one_prefix_* fields, where present."""
    prefix = record.get("one_prefix_prefix")
    word_good, word_bad = record.get("one_prefix_word_good"), record.get("one_prefix_word_bad")
    if not all(isinstance(v, str) for v in (prefix, word_good, word_bad)):
        return None
    head = f"{prefix} {word_good}" if prefix else word_good
    after = good[len(head):] if good.startswith(head) else ""
    return prefix, word_good, word_bad, after


def read_gulordava(stem) -> tuple[list, list]:
    """Items and skips of a Linzen/Gulordava data set given by its stem."""
    stem = _stem(Path(stem))
    source = str(stem)
    paths = {s: stem.with_name(stem.name + s) for s in GULORDAVA_SUFFIXES}
    present = {s for s, p in paths.items() if p.exists()}
    missing = [s for s in (".text", ".gold", ".eval") if s not in present]
    if missing:
        known = next((s for s in (".gold", ".eval", ".text") if s in present), None)
        count = _count_lines(paths[known]) if known else 0
        names = " and ".join(stem.name + s for s in missing)
        return [], [Skip(source, f"{names} missing (the Gulordava layout needs .text, .gold and .eval)", count)]
    text = _lines(paths[".text"])
    gold = _lines(paths[".gold"])
    evals = _lines(paths[".eval"])
    if not len(text) == len(gold) == len(evals):
        return [], [Skip(source, f"line counts differ: .text {len(text)}, .gold {len(gold)}, .eval {len(evals)}",
                         max(len(text), len(gold), len(evals)))]
    tab = _read_tab(paths[".tab"], gold) if ".tab" in present else None
    items, skips = [], []
    for k, (sentence, fields, index) in enumerate(zip(text, gold, evals)):
        number = k + 1
        fields = fields.split("\t")
        words = sentence.split()
        if words and words[-1] == "<eos>":
            words = words[:-1]
        try:
            target = int(index.strip())
        except ValueError:
            skips.append(Skip(source, "the .eval line is not an integer", 1, number))
            continue
        if not 0 <= target < len(words):
            skips.append(Skip(source, "the .eval index is outside the sentence", 1, number))
            continue
        if len(fields) == 4:
            annotations, problem = _linzen_gold(fields, target)
        elif len(fields) >= 8:
            annotations, problem = _gulordava_gold(fields, tab[k] if tab else None, target)
        else:
            annotations, problem = None, (f"the .gold line has {len(fields)} fields: 4 (Linzen) or 8 or more "
                                          "(Gulordava) expected")
        if problem:
            skips.append(Skip(source, problem, 1, number))
            continue
        rest = " ".join(words[target + 1:])
        items.append(Item(source, number, prefix=" ".join(words[:target]), after=" " + rest if rest else "",
                          **annotations))
    return items, skips


def _gulordava_gold(fields: list, tab: tuple | None, target: int) -> tuple[dict, None]:
    """The forms and annotations of an 8-or-more-field .gold line, with its .tab row's."""
    condition, attractors, subject = tab or (None, None, None)
    return dict(correct=fields[6], wrong=fields[7], condition=condition, n_attractors=attractors,
                subj_number=_gold_number(fields[5]),
                subject_index=subject if subject is not None and 0 <= subject < target else None), None


def _linzen_gold(fields: list, target: int) -> tuple[dict | None, str | None]:
    """The forms and annotations of a four-field .gold line (index, correct, wrong,
    attractors), or why it cannot be used."""
    index, correct, wrong, attractors = (field.strip() for field in fields)
    if index != str(target):
        return None, "the .gold index differs from the .eval index"
    if not _is_count(attractors):
        return None, "the .gold attractor count is not a non-negative integer"
    return dict(correct=correct, wrong=wrong, n_attractors=int(attractors),
                subj_number=english_verb_number(correct, wrong)), None


# English verb pairs whose singular is not the plural plus -s.
_IRREGULAR_VERBS = {("is", "are"), ("was", "were"), ("has", "have")}


def english_verb_number(correct: str, wrong: str) -> str | None:
    """The number a correct English verb form agrees with, judged against the wrong form:
    ``"sg"`` for is, was, has and the third person -s (sees/see, watches/watch,
    carries/carry), ``"pl"`` the other way round, None where morphology does not say."""
    a, b = correct.lower(), wrong.lower()
    for singular, plural, number in ((a, b, "sg"), (b, a, "pl")):
        if (singular, plural) in _IRREGULAR_VERBS or _third_person(singular, plural):
            return number
    return None


def _third_person(singular: str, plural: str) -> bool:
    """Whether ``singular`` is ``plural`` with the English -s, -es or y-to-ies ending."""
    if not plural:
        return False
    return singular in (plural + "s", plural + "es") or (plural.endswith("y") and singular == plural[:-1] + "ies")


def _gold_number(features: str) -> str | None:
    for feature in features.split("|"):
        if feature == "Number=Sing":
            return "sg"
        if feature == "Number=Plur":
            return "pl"
    return None


def _read_tab(path: Path, gold: list) -> list | None:
    """(condition, n_attractors, subject_index) per item from the long-form .tab (two
    rows an item, the ``correct`` row first), or None where it does not line up with
    the .gold. The subject's index is ``len_prefix`` - ``len_context`` (the controller's
    distance to the target) where the pattern's controller is a noun
    (``L__NOUN_VERB_VERB``), else None (in ``R__VERB_NOUN_CCONJ_VERB`` it is a verb)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = [r for r in csv.DictReader(f, delimiter="\t") if r.get("class") == "correct"]
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    if len(rows) != len(gold):
        return None
    out = []
    for row, fields in zip(rows, gold):
        fields = fields.split("\t")
        if len(fields) < 7 or row.get("form") != fields[6]:
            return None
        kind = row.get("type")
        condition = {"generated": "nonce"}.get(kind, kind) or None
        out.append((condition, _integer(row.get("n_attr")), _subject_index(row)))
    return out


def _subject_index(row: dict) -> int | None:
    pattern = (row.get("pattern") or "").split("__", 1)[-1]
    prefix, context = _integer(row.get("len_prefix")), _integer(row.get("len_context"))
    if pattern.split("_", 1)[0] != "NOUN" or prefix is None or context is None:
        return None
    return prefix - context


def _integer(cell) -> int | None:
    try:
        return int(cell or "")
    except ValueError:
        return None


def _lines(path: Path) -> list:
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _count_lines(path: Path) -> int:
    try:
        return len(_lines(path))
    except (OSError, UnicodeDecodeError):
        return 0


def _short(error) -> str:
    return getattr(error, "strerror", None) or str(error).splitlines()[0][:120]

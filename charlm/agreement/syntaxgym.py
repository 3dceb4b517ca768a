"""SyntaxGym test suites (Gauthier et al. 2020; Hu et al. 2020): reading them, parsing
their prediction formulas, and judging the predictions from region surprisals.

A suite is one JSON object with ``meta`` (``name``, ``metric``: ``sum`` or
``mean``), ``region_meta``, ``predictions`` (``{"type": "formula", "formula":
...}``) and ``items``; each item has ``item_number`` and ``conditions``, each
condition ``condition_name`` and ``regions`` (``region_number``, ``content``; the
content may be empty). A formula compares region surprisals, written
``(REGION;%CONDITION%)``, with ``<``, ``>`` and ``=`` (equal within a relative
1e-5 or an absolute 1e-3 bits, as SyntaxGym has it), adds and subtracts them
with ``+`` and ``-``, and joins comparisons with ``&`` and ``|``; parentheses
and square brackets group. Formulas are parsed by a small recursive-descent
parser, never evaluated as Python.

No model here: :mod:`charlm.agreement.gym_scoring` computes the surprisals.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from charlm.agreement.skips import Skip

METRICS = ("sum", "mean")
SUITE_KEYS = ("meta", "region_meta", "predictions", "items")
EQUALITY_RTOL, EQUALITY_ATOL = 1e-5, 1e-3


class FormulaError(ValueError):
    """A prediction formula that does not parse, or does not fit an item."""


@dataclass(frozen=True)
class Formula:
    """A parsed prediction: its text, its tree and the (region, condition) pairs it reads."""

    text: str
    tree: tuple
    references: tuple

    def __call__(self, surprisal: dict) -> bool:
        """Whether the prediction holds, given ``surprisal[(region, condition)]`` in bits."""
        return bool(_evaluate(self.tree, surprisal))


@dataclass(frozen=True)
class GymItem:
    """One item: its number and, per condition name, its regions as (number, content) pairs."""

    number: object
    conditions: dict  # condition name -> tuple of (region number, content)


@dataclass
class Suite:
    """A suite read from ``source``: its name, metric, predictions and usable items."""

    source: str
    name: str
    metric: str
    predictions: list  # Formula
    items: list  # GymItem


def is_suite(record) -> bool:
    """Whether a parsed JSON value has the shape of a SyntaxGym suite."""
    return isinstance(record, dict) and all(key in record for key in SUITE_KEYS)


def looks_like_suite(path) -> bool:
    """Whether the file at ``path`` is one JSON object with a suite's keys."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            return is_suite(json.load(f))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False


def read_suite(path) -> tuple[list, list]:
    """``(suites, skips)`` of one SyntaxGym file: the suite (in a list of one) with the
    items that can be scored, and a :class:`~charlm.agreement.formats.Skip` for every
    item that cannot (naming the file and the item) or for the whole file."""
    path = Path(path)
    source = str(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            record = json.load(f)
    except ValueError as error:
        return [], [Skip(source, f"{source}: not JSON ({str(error)[:80]})", 0)]
    except RecursionError:
        return [], [Skip(source, f"{source}: not JSON (nested too deeply)", 0)]
    if not is_suite(record):
        return [], [Skip(source, f"{source}: neither a SyntaxGym suite (an object with meta, region_meta, "
                                 "predictions and items) nor BLiMP JSON lines", 0)]
    raw_items = record["items"] if isinstance(record["items"], list) else []
    meta = record["meta"] if isinstance(record["meta"], dict) else {}
    name = meta.get("name") if isinstance(meta.get("name"), str) else path.stem
    metric = meta.get("metric", "sum")
    if metric not in METRICS:
        return [], [Skip(source, f"{source}: meta.metric must be sum or mean, got {str(metric)[:20]!r}",
                         len(raw_items))]
    predictions = record["predictions"]
    if not isinstance(predictions, list) or not predictions:
        return [], [Skip(source, f"{source}: the suite has no predictions", len(raw_items))]
    formulas = []
    for k, prediction in enumerate(predictions, start=1):
        text = prediction.get("formula") if isinstance(prediction, dict) else prediction
        if not isinstance(text, str):
            return [], [Skip(source, f"{source}: prediction {k} has no formula", len(raw_items))]
        try:
            formulas.append(parse_formula(text))
        except FormulaError as error:
            return [], [Skip(source, f"{source}: prediction {k} {text[:60]!r} does not parse: {error}",
                             len(raw_items))]
    if not isinstance(record["items"], list):
        return [], [Skip(source, f"{source}: items is not a list", 0)]
    items, skips = [], []
    for index, raw in enumerate(raw_items, start=1):
        number = raw.get("item_number", index) if isinstance(raw, dict) else index
        label = f"{source}, item {number}"
        try:
            item = _item(raw, number)
            _check(item, formulas)
        except FormulaError as error:
            skips.append(Skip(source, f"{label}: {error}", 1, index))
            continue
        items.append(item)
    return [Suite(source, name, metric, formulas, items)], skips


def _item(raw, number) -> GymItem:
    if not isinstance(raw, dict) or not isinstance(raw.get("conditions"), list):
        raise FormulaError("not an object with a list of conditions")
    conditions = {}
    for condition in raw["conditions"]:
        if not isinstance(condition, dict) or not isinstance(condition.get("condition_name"), str) \
                or not isinstance(condition.get("regions"), list):
            raise FormulaError("a condition without condition_name and a list of regions")
        regions = []
        for region in condition["regions"]:
            if not isinstance(region, dict):
                raise FormulaError(f"condition {condition['condition_name']!r}: a region is not an object")
            content, where = region.get("content"), region.get("region_number")
            content = "" if content is None else content
            if not isinstance(content, str) or isinstance(where, bool) or not isinstance(where, (int, str)) \
                    or not str(where).strip().isdigit():
                raise FormulaError(f"condition {condition['condition_name']!r}: a region without an integer "
                                   "region_number and a string content")
            regions.append((int(where), content))
        numbers = [n for n, _ in regions]
        if len(set(numbers)) != len(numbers):
            raise FormulaError(f"condition {condition['condition_name']!r} repeats a region number")
        if condition["condition_name"] in conditions:
            raise FormulaError(f"condition {condition['condition_name']!r} appears twice")
        conditions[condition["condition_name"]] = tuple(regions)
    if not conditions:
        raise FormulaError("no conditions")
    layouts = {name: sorted(n for n, _ in regions) for name, regions in conditions.items()}
    first = next(iter(layouts))
    for name, layout in layouts.items():
        if layout != layouts[first]:
            raise FormulaError(f"conditions have different region numbers ({first!r}: {_span(layouts[first])}; "
                               f"{name!r}: {_span(layout)})")
    return GymItem(number, conditions)


def _span(numbers) -> str:
    return ",".join(map(str, numbers)) or "none"


def _check(item: GymItem, formulas) -> None:
    """Raise :class:`FormulaError` where a formula names a condition or region the item lacks."""
    for k, formula in enumerate(formulas, start=1):
        for region, condition in formula.references:
            if condition not in item.conditions:
                raise FormulaError(f"prediction {k} names condition {condition!r}, which the item lacks")
            if region not in {n for n, _ in item.conditions[condition]}:
                raise FormulaError(f"prediction {k} names region {region} of condition {condition!r}, "
                                   "which the item lacks")


def sentence_pieces(regions, word: bool) -> list:
    """Each region's text as the model reads it, in region order. Character and byte models:
    its content and the character that ends it, the space before the next region with content
    or, after the last, the line break that ends the sentence: that boundary is what tells
    the model the word is over ("is" and a space is not the start of "island"), as a word
    model's word token does by itself. A word model reads the contents alone."""
    regions = sorted(regions)
    filled = [k for k, (_, content) in enumerate(regions) if content]
    pieces = []
    for k, (_, content) in enumerate(regions):
        if word or not content:
            pieces.append(content)
        else:
            pieces.append(content + ("\n" if k == filled[-1] else " "))
    return pieces


# ---- prediction formulas ----------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<number>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
                    r"|%(?P<name>[^%]*)%|(?P<op>[()\[\];&|<>=+\-]))")


def _tokens(text: str) -> list:
    out, position = [], 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise FormulaError(f"unexpected {text[position:].lstrip()[:10]!r}")
        if match.group("number") is not None:
            out.append(("number", match.group("number")))
        elif match.group("name") is not None:
            out.append(("name", match.group("name").strip()))
        else:
            out.append(("op", match.group("op")))
        position = match.end()
    return out


def parse_formula(text: str) -> Formula:
    """Parse a SyntaxGym prediction; raise :class:`FormulaError` where it does not parse
    or is not a comparison (a formula must be true or false)."""
    parser = _Parser(_tokens(text))
    tree = parser.disjunction()
    if parser.position != len(parser.tokens):
        raise FormulaError(f"unexpected {parser.show()} after a complete formula")
    if _kind(tree) != "bool":
        raise FormulaError("the formula compares nothing (no <, > or =)")
    return Formula(text, tree, tuple(dict.fromkeys(_references(tree))))


class _Parser:
    """disjunction := conjunction ('|' conjunction)*;  conjunction := comparison ('&' comparison)*;
    comparison := sum (('<' | '>' | '=') sum)?;  sum := atom (('+' | '-') atom)*;
    atom := '(' NUMBER ';' %NAME% ')' | NUMBER | '-' atom | '(' disjunction ')' | '[' disjunction ']'."""

    def __init__(self, tokens):
        self.tokens, self.position = tokens, 0

    def peek(self, offset: int = 0):
        k = self.position + offset
        return self.tokens[k] if k < len(self.tokens) else (None, None)

    def show(self) -> str:
        kind, value = self.peek()
        return "the end" if kind is None else repr(f"%{value}%" if kind == "name" else value)

    def take(self, value: str):
        if self.peek() != ("op", value):
            raise FormulaError(f"expected {value!r}, found {self.show()}")
        self.position += 1

    def disjunction(self):
        tree = self.conjunction()
        while self.peek() == ("op", "|"):
            self.position += 1
            tree = ("|", _want(tree, "bool", "|"), _want(self.conjunction(), "bool", "|"))
        return tree

    def conjunction(self):
        tree = self.comparison()
        while self.peek() == ("op", "&"):
            self.position += 1
            tree = ("&", _want(tree, "bool", "&"), _want(self.comparison(), "bool", "&"))
        return tree

    def comparison(self):
        tree = self.sum()
        kind, value = self.peek()
        if kind == "op" and value in "<>=":
            self.position += 1
            tree = (value, _want(tree, "number", value), _want(self.sum(), "number", value))
        return tree

    def sum(self):
        tree = self.atom()
        while self.peek() in (("op", "+"), ("op", "-")):
            op = self.peek()[1]
            self.position += 1
            tree = (op, _want(tree, "number", op), _want(self.atom(), "number", op))
        return tree

    def atom(self):
        kind, value = self.peek()
        if kind == "number":
            self.position += 1
            return ("number", float(value))
        if (kind, value) == ("op", "-"):
            self.position += 1
            return ("-", ("number", 0.0), _want(self.atom(), "number", "-"))
        if (kind, value) == ("op", "(") and self.peek(1)[0] == "number" and self.peek(2) == ("op", ";"):
            number = self.peek(1)[1]
            self.position += 3
            name_kind, name = self.peek()
            if name_kind != "name" or not name:
                raise FormulaError(f"expected %CONDITION% after {number};, found {self.show()}")
            self.position += 1
            self.take(")")
            if not number.isdigit():
                raise FormulaError(f"region {number!r} is not a whole number")
            return ("region", int(number), name)
        if (kind, value) in (("op", "("), ("op", "[")):
            self.position += 1
            tree = self.disjunction()
            self.take(")" if value == "(" else "]")
            return tree
        raise FormulaError(f"expected a region, a number or a bracket, found {self.show()}")


def _kind(tree) -> str:
    return "bool" if tree[0] in ("<", ">", "=", "&", "|") else "number"


def _want(tree, kind: str, op: str):
    if _kind(tree) != kind:
        what = "a comparison" if kind == "bool" else "a surprisal or a number"
        raise FormulaError(f"{op!r} needs {what} on each side")
    return tree


def _references(tree):
    if tree[0] == "region":
        yield tree[1], tree[2]
    elif tree[0] != "number":
        for child in tree[1:]:
            yield from _references(child)


def _evaluate(tree, surprisal: dict):
    op = tree[0]
    if op == "number":
        return tree[1]
    if op == "region":
        return surprisal[(tree[1], tree[2])]
    left, right = _evaluate(tree[1], surprisal), _evaluate(tree[2], surprisal)
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "<":
        return left < right
    if op == ">":
        return left > right
    if op == "=":
        return math.isclose(left, right, rel_tol=EQUALITY_RTOL, abs_tol=EQUALITY_ATOL)
    if op == "&":
        return left and right
    return left or right  # "|"

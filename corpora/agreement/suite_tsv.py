"""Reading and writing agreement suites as tab-separated files with a header."""

import csv
from collections.abc import Iterable
from dataclasses import astuple, fields
from pathlib import Path

from corpora.agreement.grammar import Item

COLUMNS = tuple(f.name for f in fields(Item))


def write_suite(path: str | Path, items: Iterable[Item]) -> None:
    """Write ``items`` to ``path`` as TSV with the header :data:`COLUMNS`."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE)
        writer.writerow(COLUMNS)
        writer.writerows(astuple(item) for item in items)


def read_suite(path: str | Path) -> list[Item]:
    """Read a suite written by :func:`write_suite`; raise ``ValueError`` on a bad header or row."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or tuple(rows[0]) != COLUMNS:
        raise ValueError(f"{path}: header must be {' '.join(COLUMNS)}")
    items = []
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) != len(COLUMNS):
            raise ValueError(f"{path}:{line_no}: expected {len(COLUMNS)} columns, got {len(row)}")
        record = dict(zip(COLUMNS, row))
        record["n_attractors"] = int(record["n_attractors"])
        record["subject_index"] = int(record["subject_index"])
        items.append(Item(**record))
    return items

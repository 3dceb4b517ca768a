"""Writing agreement suites as SyntaxGym test suites (Gauthier et al. 2020), one JSON
file a condition.

Each item has two conditions, ``grammatical`` and ``ungrammatical``, of three regions:
1 the prefix (subject and any attractors), 2 the verb (the correct or the wrong
form), 3 the rest of the sentence (may be empty). The one prediction is
``(2;%grammatical%) < (2;%ungrammatical%)``: the correct verb is less surprising.
Items also carry their ``n_attractors``, ``subj_number`` and ``subject_index`` (the
index of the subject's head noun among the words of region 1; SyntaxGym readers ignore
keys they do not know). Items are written one a line, so diffs stay readable.
"""

import json
from collections.abc import Iterable
from pathlib import Path

from corpora.agreement.grammar import Item

PREDICTION = "(2;%grammatical%) < (2;%ungrammatical%)"
REGIONS = {"1": "Subject", "2": "Verb", "3": "Continuation"}


def suite_record(name: str, items: Iterable[Item]) -> dict:
    """The SyntaxGym suite ``name`` of ``items`` as a JSON-ready dict."""
    records = []
    for number, item in enumerate(items, start=1):
        conditions = [{"condition_name": condition, "regions": [
            {"region_number": 1, "content": item.prefix},
            {"region_number": 2, "content": verb},
            {"region_number": 3, "content": item.suffix}]}
            for condition, verb in (("grammatical", item.correct), ("ungrammatical", item.wrong))]
        records.append({"item_number": number, "conditions": conditions,
                        "n_attractors": item.n_attractors, "subj_number": item.subj_number,
                        "subject_index": item.subject_index})
    return {"meta": {"name": name, "metric": "sum"}, "region_meta": REGIONS,
            "predictions": [{"type": "formula", "formula": PREDICTION}], "items": records}


def write_syntaxgym_suite(path: str | Path, name: str, items: Iterable[Item]) -> None:
    """Write ``items`` to ``path`` as the SyntaxGym suite ``name``."""
    record = suite_record(name, items)
    head = {key: value for key, value in record.items() if key != "items"}
    lines = ["{"]
    lines += [f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}," for key, value in head.items()]
    lines.append('  "items": [')
    rows = [f"    {json.dumps(item, ensure_ascii=False)}" for item in record["items"]]
    lines.append(",\n".join(rows))
    lines += ["  ]", "}"]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_syntaxgym_suites(folder: str | Path, items: Iterable[Item]) -> list[Path]:
    """Write one suite a condition of ``items`` into ``folder`` as ``CONDITION.json``;
    return the paths, in the order the conditions first appear."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    by_condition = {}
    for item in items:
        by_condition.setdefault(item.condition, []).append(item)
    paths = []
    for condition, condition_items in by_condition.items():
        path = folder / f"{condition}.json"
        write_syntaxgym_suite(path, condition, condition_items)
        paths.append(path)
    return paths


def write_benchmark_suites(folder: str | Path, items: list[Item], suites: int = 34, per_suite: int = 25) -> Path:
    """A directory of ``suites`` suites of ``per_suite`` items each, the size of Hu et al.
    (2020)'s set by default (34 suites, 850 items, 3,400 sentences): each item has the two
    conditions of :func:`suite_record` and two more cut after the verb (an empty last region),
    and the suite a second, compound prediction over them. For timing `charlm agree`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(suites):
        chunk = items[s * per_suite : (s + 1) * per_suite]
        record = suite_record(f"suite_{s:02d}", chunk)
        for entry, item in zip(record["items"], chunk):
            for name, verb in (("grammatical_short", item.correct), ("ungrammatical_short", item.wrong)):
                entry["conditions"].append({"condition_name": name, "regions": [
                    {"region_number": 1, "content": item.prefix}, {"region_number": 2, "content": verb},
                    {"region_number": 3, "content": ""}]})
        record["predictions"].append({"type": "formula", "formula": "(2;%grammatical_short%) < "
                                      "(2;%ungrammatical_short%) | (2;%grammatical%) + (3;%grammatical%) < "
                                      "(2;%ungrammatical%) + (3;%ungrammatical%)"})
        (folder / f"suite_{s:02d}.json").write_text(json.dumps(record), encoding="utf-8")
    return folder

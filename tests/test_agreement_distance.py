"""Agreement accuracy by the distance from the subject's head noun to the verb: the two
distances on hand-worked items, the buckets at their edges, the breakdowns in the summary,
and `charlm agree --by distance` in the table, the JSON and the plot."""

from __future__ import annotations

import json

import pytest

from charlm.agreement.formats import Item
from charlm.agreement.stats import (
    CHARACTER_BUCKETS,
    WORD_BUCKETS,
    bucket_label,
    character_distance,
    summarize,
    word_distance,
)
from tests.helpers import assert_one_line_error, invoke


def item(prefix, subject_index, line=1, correct="is", wrong="are"):
    return Item("t", line, correct, wrong, prefix, subject_index=subject_index)


@pytest.mark.parametrize("prefix, subject, words, characters", [
    ("the key", 1, 1, 1),  # "the key| |is"
    ("the old key", 2, 1, 1),
    ("the key near the box", 1, 4, 14),  # "the key| near the box |is": 1 + 12 + 1
    ("the keys to the cabinets near the door", 1, 7, 31),  # 1 + 29 + 1
    ("the mechanic said the key", 4, 1, 1),  # the subject of the complement clause
    ("the mechanic said the key", 1, 4, 14),  # "mechanic| said the key |": 1 + 12 + 1
    ("the key  near the box", 1, 4, 15),  # two blanks count as two characters
    ("key", 0, 1, 1),
])
def test_distances_by_hand(prefix, subject, words, characters):
    assert word_distance(item(prefix, subject)) == words
    assert character_distance(item(prefix, subject)) == characters


def test_distance_unknown_without_a_subject_or_prefix():
    assert word_distance(item("the key", None)) is None and character_distance(item("the key", None)) is None
    pair = Item("t", 1, "the key is old .", "the key are old .", subject_index=1)
    assert word_distance(pair) is None and character_distance(pair) is None


def test_bucket_labels():
    assert [bucket_label(b) for b in WORD_BUCKETS] == ["1", "2", "3-4", "5-7", "8-12", "13+"]
    assert [bucket_label(b) for b in CHARACTER_BUCKETS] == ["1-10", "11-20", "21-40", "41-60", "61+"]


def with_characters(n: int, line: int = 1) -> Item:
    """An item whose verb is ``n`` characters after its subject (n >= 3): "the key" then
    one word of n - 2 letters."""
    return item("the key " + "x" * (n - 2), 1, line)


def test_character_buckets_at_their_edges():
    spans = [3, 10, 11, 20, 21, 40, 41, 60, 61, 300]
    items = [with_characters(n, line) for line, n in enumerate(spans, start=1)]
    assert [character_distance(i) for i in items] == spans
    summary = summarize([(i, True) for i in items])
    assert {k: g["n"] for k, g in summary["by_char_distance"].items()} == {
        "1-10": 2, "11-20": 2, "21-40": 2, "41-60": 2, "61+": 2}
    assert summary["by_distance"] == {"2": summary["by_distance"]["2"]} and summary["by_distance"]["2"]["n"] == 10


def test_word_buckets_at_their_edges():
    distances = [1, 2, 3, 4, 5, 7, 8, 12, 13, 40]
    items = [item(" ".join(["w"] * d), 0, line) for line, d in enumerate(distances, start=1)]
    assert [word_distance(i) for i in items] == distances
    outcomes = [True, False, True, True, False, False, True, True, True, False]
    summary = summarize(list(zip(items, outcomes)))
    groups = summary["by_distance"]
    assert list(groups) == ["1", "2", "3-4", "5-7", "8-12", "13+"]  # bucket order
    assert [(g["n"], g["correct"]) for g in groups.values()] == [(1, 1), (1, 0), (2, 2), (2, 0), (2, 2), (2, 1)]
    assert groups["13+"]["accuracy"] == 0.5


def test_breakdowns_only_where_a_subject_is_known():
    known, unknown = item("the key near the box", 1, 1), item("the keys", None, 2)
    assert "by_distance" not in summarize([(unknown, True)])
    assert "by_char_distance" not in summarize([(unknown, True)])
    summary = summarize([(known, True), (unknown, False)])
    assert {k: g["n"] for k, g in summary["by_distance"].items()} == {"3-4": 1, "unknown": 1}
    assert {k: g["n"] for k, g in summary["by_char_distance"].items()} == {"11-20": 1, "unknown": 1}


TSV = ("prefix\tcorrect\twrong\tsuffix\tsubject_index\n"
       "the keys near the cabinet\tare\tis\told .\t1\n"
       "the key\tis\tare\told .\t1\n"
       "the author that the guards like\tlaughs\tlaugh\t.\t1\n"
       "the key\tis\tare\t.\tNA\n")


def test_agree_by_distance_table_json_and_plot(tiny_model_path, tmp_path):
    suite = tmp_path / "suite.tsv"
    suite.write_text(TSV, encoding="utf-8")
    plot = tmp_path / "distance.png"
    result = invoke("agree", tiny_model_path, suite, "--by", "distance", "--json", "--plot", plot)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # Words: 4, 1, 5 and unknown; characters: 17 (" near the cabinet "), 1, 22 (" that the guards like "), unknown.
    assert {k: g["n"] for k, g in summary["by_distance"].items()} == {"1": 1, "3-4": 1, "5-7": 1, "unknown": 1}
    assert {k: g["n"] for k, g in summary["by_char_distance"].items()} == {"1-10": 1, "11-20": 1, "21-40": 1,
                                                                           "unknown": 1}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = invoke("agree", tiny_model_path, suite, "--by", "distance").stdout
    assert "by distance (words)" in table and "by distance (characters)" in table
    assert "\n  21-40 " in table and "\n  5-7 " in table
    plain = invoke("agree", tiny_model_path, suite).stdout
    assert "by distance" not in plain


def test_agree_without_subject_positions_notes_and_omits(tiny_model_path, tmp_path):
    suite = tmp_path / "suite.tsv"
    suite.write_text("prefix\tcorrect\twrong\nthe key\tis\tare\n", encoding="utf-8")
    result = invoke("agree", tiny_model_path, suite, "--by", "distance", "--json")
    assert result.exit_code == 0
    assert "by_distance" not in json.loads(result.stdout)
    assert "no breakdown by distance: no item gives its subject's position" in result.stderr
    # A plot by distance cannot be drawn: one line, and no file.
    plot = tmp_path / "d.png"
    assert_one_line_error(invoke("agree", tiny_model_path, suite, "--plot", plot, "--plot-by", "distance"),
                          "--plot-by distance")
    assert not plot.exists()

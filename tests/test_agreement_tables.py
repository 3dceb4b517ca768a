"""charlm agree's tables: TSV and CSV (by extension or by the header line), a byte-order
mark, CRLF line ends, quoted CSV fields, and the spellings of "unknown" in the optional
columns, whose items are scored and reported in an "unknown" group."""

from __future__ import annotations

import json

import pytest

from charlm.agreement.formats import UNKNOWN_VALUES, detect, is_unknown, load, read_tsv
from charlm.agreement.stats import summarize
from tests.helpers import invoke

SPELLINGS = ["", "NA", "na", "N/A", "n/a", "NaN", "nan", "NAN", "None", "NONE", "null", "NULL", "Null", "-", " NA "]


@pytest.mark.parametrize("cell", SPELLINGS)
def test_every_spelling_of_unknown_leaves_the_value_unknown(tmp_path, cell):
    path = tmp_path / "suite.tsv"
    path.write_text("prefix\tcorrect\twrong\tcondition\tn_attractors\tsubj_number\n"
                    f"the key\tis\tare\t{cell}\t{cell}\t{cell}\n", encoding="utf-8")
    items, skips = read_tsv(path)
    assert not skips and len(items) == 1
    assert (items[0].condition, items[0].n_attractors, items[0].subj_number) == (None, None, None)
    assert is_unknown(cell)


def test_real_values_are_not_unknown():
    assert UNKNOWN_VALUES == {"", "na", "n/a", "nan", "none", "null", "-"}
    for value in ("0", "sg", "simple", "n", "a", "--", "nana"):
        assert not is_unknown(value)


def test_csv_with_bom_crlf_and_quoted_fields(tmp_path):
    path = tmp_path / "suite.csv"
    rows = ['prefix,correct,wrong,suffix,condition,n_attractors,subj_number',
            '"the keys, near the cabinet",are,is,old .,pp,1,pl',
            '"the key ""near"" the boxes",is,are,,"pp",NA,sg',
            '',
            'the box,is,are,old .,N/A,0,null']
    path.write_bytes(("\ufeff" + "\r\n".join(rows) + "\r\n").encode("utf-8"))
    assert detect(path) == "tsv"
    items, skips = read_tsv(path)
    assert not skips
    assert [i.prefix for i in items] == ["the keys, near the cabinet", 'the key "near" the boxes', "the box"]
    assert [i.line for i in items] == [2, 3, 5]
    assert [i.after for i in items] == [" old .", "", " old ."]
    assert [(i.condition, i.n_attractors, i.subj_number) for i in items] == [
        ("pp", 1, "pl"), ("pp", None, "sg"), (None, 0, None)]
    assert not any("\r" in i.correct + i.wrong + i.after for i in items)


def test_quoted_field_over_two_lines_keeps_line_numbers(tmp_path):
    path = tmp_path / "suite.csv"
    path.write_text('sentence_good,sentence_bad\n"the key\nis old .",the key are old .\nthe keys are old .,'
                    'the keys is old .\n', encoding="utf-8")
    items, skips = read_tsv(path)
    assert not skips and [i.line for i in items] == [2, 4]
    assert items[0].correct == "the key\nis old ."


@pytest.mark.parametrize("header, expected", [
    ("prefix,correct,wrong", "tsv"), ("\ufeffsentence_good,sentence_bad,condition", "tsv"),
    ("prefix\tcorrect\twrong", "tsv"), ("prefix;correct;wrong", None), ("just some text", None),
])
def test_delimiter_sniffed_from_the_header(tmp_path, header, expected):
    path = tmp_path / "suite.txt"
    path.write_text(header + "\r\nthe key,is,are\n", encoding="utf-8")
    assert detect(path) == expected


def test_tsv_with_bom_and_crlf(tmp_path):
    path = tmp_path / "suite.tsv"
    path.write_bytes("\ufeffprefix\tcorrect\twrong\tsubj_number\r\nthe key\tis\tare\tSG\r\n".encode("utf-8"))
    items, skips = read_tsv(path)
    assert not skips and items[0].prefix == "the key" and items[0].subj_number == "sg"


def test_a_directory_finds_csv_files(tmp_path):
    (tmp_path / "a.csv").write_text("prefix,correct,wrong\nthe key,is,are\n", encoding="utf-8")
    (tmp_path / "b.tsv").write_text("prefix\tcorrect\twrong\nthe keys\tare\tis\n", encoding="utf-8")
    loaded = load([tmp_path])
    assert len(loaded.items) == 2 and not loaded.skips


def test_unknown_values_form_an_unknown_group(tmp_path):
    path = tmp_path / "suite.csv"
    path.write_text("prefix,correct,wrong,condition,n_attractors,subj_number\n"
                    "the key,is,are,simple,0,sg\n"
                    "the keys,are,is,NA,NA,NA\n"
                    "the keys near the box,are,is,pp,1,-\n"
                    "the key near the boxes,is,are,,,\n", encoding="utf-8")
    items = load([path]).items
    summary = summarize([(item, ok) for item, ok in zip(items, [True, False, True, True])])
    assert list(summary["by_condition"]) == ["simple", "pp", "unknown"]
    assert summary["by_condition"]["unknown"]["n"] == 2 and summary["by_condition"]["unknown"]["accuracy"] == 0.5
    assert list(summary["by_attractors"]) == ["0", "1", "unknown"]
    assert list(summary["by_subj_number"]) == ["sg", "unknown"]
    for key in ("by_condition", "by_attractors", "by_subj_number"):
        assert sum(group["n"] for group in summary[key].values()) == summary["n"] == 4
    # Baselines that need the number are computed on the items whose number is known.
    assert summary["by_subj_number"]["unknown"]["baselines"]["always_singular"] is None


def test_a_real_group_named_unknown_is_merged_with_the_unknown_items(tmp_path):
    path = tmp_path / "suite.tsv"
    path.write_text("prefix\tcorrect\twrong\tcondition\nthe key\tis\tare\tunknown\nthe keys\tare\tis\tNA\n",
                    encoding="utf-8")
    items = load([path]).items
    summary = summarize([(item, True) for item in items])
    assert summary["by_condition"]["unknown"]["n"] == 2


NA_EVERYWHERE = ("prefix,correct,wrong,suffix,condition,n_attractors,subj_number\r\n"
                 + "".join(f"{prefix},{good},{bad},old .,NA,NA,NA\r\n" for prefix, good, bad in [
                     ("the key", "is", "are"), ("the keys", "are", "is"), ("the box", "is", "are"),
                     ("the boxes", "are", "is"), ('"the key, the box"', "are", "is")]))


def test_na_everywhere_scores_every_item(tiny_model_path, tmp_path):
    """Every row lacks the optional columns' values: every item is scored, in "unknown" groups."""
    path = tmp_path / "na.csv"
    path.write_bytes(("\ufeff" + NA_EVERYWHERE).encode("utf-8"))
    result = invoke("agree", tiny_model_path, path, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n"] == 5 and summary["skipped"] == 0
    for key in ("by_condition", "by_attractors", "by_subj_number"):
        assert list(summary[key]) == ["unknown"] and summary[key]["unknown"]["n"] == 5
    assert summary["baselines"]["always_singular"] is None
    table = invoke("agree", tiny_model_path, path)
    assert table.exit_code == 0, table.output
    assert "by condition" not in table.stdout and "unknown" not in table.stdout
    assert table.stdout.splitlines()[-1].split()[:2] == ["all", "5"]


def test_table_shows_the_unknown_group(tiny_model_path, tmp_path):
    path = tmp_path / "suite.tsv"
    path.write_text("prefix\tcorrect\twrong\tcondition\tn_attractors\nthe key\tis\tare\tsimple\t0\n"
                    "the keys\tare\tis\tnull\tN/A\n", encoding="utf-8")
    result = invoke("agree", tiny_model_path, path)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines.index("by condition") < lines.index("by attractors")
    assert sum(1 for line in lines if line.split()[:2] == ["unknown", "1"]) == 2

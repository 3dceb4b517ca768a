"""scripts/val_breakdown.py: each character of a text of speeches lands in the cell a hand count
gives it, the cells' figures are their characters' means, and the script's whole-text loss is
`charlm eval`'s."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "scripts"))
import val_breakdown  # noqa: E402

TRAIN = "A:\nhi\n\nB:\nyo\n"
VAL = "ho\n\nA:\nab\n\nC:\nThus:\ncd"


def test_speakers_are_the_names_of_lines_after_a_blank_line():
    assert val_breakdown.speakers(TRAIN) == {"A", "B"}
    # "Thus:" follows a speech line, so it is speech, not a speaker named Thus.
    assert val_breakdown.speakers(VAL) == {"A", "C"}
    assert val_breakdown.speakers("First Citizen:\nword\n\nKING RICHARD III:\nx") == {"First Citizen",
                                                                                      "KING RICHARD III"}


def test_each_character_lands_in_its_cell():
    group, kind = val_breakdown.character_cells(VAL, val_breakdown.speakers(TRAIN))
    # line by line, each with its line break: "ho" "" before any speaker; "A:" "ab" "" seen;
    # "C:" "Thus:" "cd" new, the last without a line break
    none, seen, new = 2, 0, 1
    speaker, speech = 0, 1
    expected_group = [none] * 3 + [none] + [seen] * 3 + [seen] * 3 + [seen] + [new] * 3 + [new] * 6 + [new] * 2
    expected_kind = [speech] * 4 + [speaker] * 3 + [speech] * 4 + [speaker] * 3 + [speech] * 8
    assert len(expected_group) == len(VAL)
    np.testing.assert_array_equal(group, expected_group)
    np.testing.assert_array_equal(kind, expected_kind)


def test_cells_are_their_characters_means_and_shares():
    nats = np.array([np.nan, 1.0, 2.0, 3.0, 4.0, 5.0])
    group = np.array([2, 2, 0, 0, 1, 1])
    kind = np.array([1, 1, 0, 1, 1, 1])
    rows = val_breakdown.breakdown(nats, group, kind)
    got = {(r["group"], r["lines"]): (r["characters"], r["nats"], r["share_of_loss"]) for r in rows}
    assert got == {("seen", "speaker line"): (1, 2.0, 2 / 15), ("seen", "speech"): (1, 3.0, 3 / 15),
                   ("new", "speech"): (2, 4.5, 9 / 15), ("none", "speech"): (1, 1.0, 1 / 15)}


def test_the_script_reports_charlm_evals_loss(tiny_corpus, tiny_model_path, tmp_path):
    from tests.helpers import invoke

    script = [sys.executable, str(REPO / "scripts" / "val_breakdown.py"), str(tiny_model_path),
              "--corpus", str(tiny_corpus), "--val-fraction", "0.1"]
    done = subprocess.run([*script, "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    text = tiny_corpus.read_text(encoding="utf-8")
    val = text[len(text) - round(len(text) * 0.1):]
    val_file = tmp_path / "val_part.txt"
    val_file.write_text(val, encoding="utf-8")
    evaluated = invoke("eval", tiny_model_path, val_file, "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert result["characters"] == len(val)
    # float32 log-probabilities, summed in another order
    assert result["nats"] == pytest.approx(json.loads(evaluated.stdout)["loss"], rel=1e-6)
    # the bundled corpus has no speaker lines: every character is speech before any speaker
    assert [(r["group"], r["lines"], r["characters"]) for r in result["cells"]] == [("none", "speech", len(val))]
    bad = subprocess.run([*script, "--val-fraction", "1.5"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and bad.stderr.strip().count("\n") == 0 and "--val-fraction" in bad.stderr

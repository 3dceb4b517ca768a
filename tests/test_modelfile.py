"""The model file (charlm.nn.modelfile): files written by the previous release load and compute
what that release computed; a file stands alone, in a fresh process, with plain Keras loading
it; a record naming a setting this charlm does not have, or written by a newer charlm, is
refused in one line."""

import json
import shutil
import textwrap
import zipfile

import numpy as np
import pytest

import charlm
from charlm.errors import CharlmError
from charlm.nn.modelfile import FORMAT_VERSION, MEMBER
from tests.helpers import FIXTURES, assert_one_line_error, invoke, run_python

RELEASE = FIXTURES / "release-0.1"
EXPECTED = json.loads((RELEASE / "expected.json").read_text(encoding="utf-8"))
# Each file's cell and tokenizer, as its README describes it.
MODELS = {"lstm_char": ("lstm", "char"), "gru_word": ("gru", "word"), "rnn_byte": ("rnn", "byte")}


def test_every_release_file_has_its_expectations():
    assert sorted(EXPECTED) == sorted(MODELS)
    assert sorted(p.stem for p in RELEASE.glob("*.keras")) == sorted(MODELS)


@pytest.mark.parametrize("name", list(MODELS))
def test_release_files_load_and_compute_what_that_release_computed(name):
    expected = EXPECTED[name]
    lm = charlm.load(RELEASE / f"{name}.keras")
    cell, kind = MODELS[name]
    assert (lm.config.cell, lm.config.layers, lm.config.hidden, lm.tokenizer.kind) == (cell, 2, 8, kind)
    ids = lm.tokenizer.encode(expected["prompt"])
    assert ids.tolist() == expected["ids"]
    logits, states = lm.logits(ids[None, :])
    assert logits.shape == (1, len(ids), lm.tokenizer.vocab_size) == (1, len(ids), len(expected["logits_last"]))
    np.testing.assert_allclose(np.asarray(logits)[0, -1], expected["logits_last"], rtol=0, atol=1e-5)
    assert len(states) == len(expected["states"]) == 2 * lm.config.states_per_layer
    for i, (state, want) in enumerate(zip(states, expected["states"])):
        np.testing.assert_allclose(np.asarray(state)[0], want, rtol=0, atol=1e-5, err_msg=f"state {i}")


@pytest.mark.parametrize("name", list(MODELS))
def test_version_1_files_read_the_version_2_settings_as_their_defaults(name):
    from charlm.nn.modelfile import read_record

    assert read_record(RELEASE / f"{name}.keras")["format_version"] == 1
    lm = charlm.load(RELEASE / f"{name}.keras")
    assert lm.config.tie_weights is False
    if lm.tokenizer.kind == "word":
        rules = lm.tokenizer.rules
        assert (rules.lowercase, rules.split_punctuation, rules.numbers_token) == (False, False, None)


def test_new_files_are_format_version_3(tiny_model_path):
    from charlm.nn.modelfile import read_record

    assert FORMAT_VERSION == 3 and read_record(tiny_model_path)["format_version"] == 3


FORMAT_2 = FIXTURES / "format-2"
FORMAT_2_EXPECTED = json.loads((FORMAT_2 / "expected.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(FORMAT_2_EXPECTED))
def test_format_2_files_load_and_compute_what_they_computed(name):
    """Tied outputs and word rules, as the previous format wrote them; the settings added since
    read as their defaults, which are what that format did."""
    from charlm.nn.modelfile import read_record

    assert read_record(FORMAT_2 / f"{name}.keras")["format_version"] == 2
    expected = FORMAT_2_EXPECTED[name]
    lm = charlm.load(FORMAT_2 / f"{name}.keras")
    assert lm.config.tie_weights is True
    assert (lm.config.weight_drop, lm.config.embedding_dropout, lm.config.locked_dropout) == (0.0, 0.0, False)
    if lm.tokenizer.kind == "word":
        rules = lm.tokenizer.rules
        assert (rules.lowercase, rules.split_punctuation, rules.numbers_token) == (True, True, "<num>")
    ids = lm.tokenizer.encode(expected["prompt"])
    assert ids.tolist() == expected["ids"]
    logits, states = lm.logits(ids[None, :])
    np.testing.assert_allclose(np.asarray(logits)[0, -1], expected["logits_last"], rtol=0, atol=1e-5)
    for i, (state, want) in enumerate(zip(states, expected["states"], strict=True)):
        np.testing.assert_allclose(np.asarray(state)[0], want, rtol=0, atol=1e-5, err_msg=f"state {i}")


@pytest.mark.parametrize("name", list(MODELS))
def test_info_describes_release_files(name):
    cell, kind = MODELS[name]
    result = invoke("info", RELEASE / f"{name}.keras")
    assert result.exit_code == 0, result.output
    assert f"charlm 2x8 {cell.upper()} language model" in result.stdout
    assert f"tokenizer:   {kind}, vocabulary of {len(EXPECTED[name]['logits_last'])}" in result.stdout
    described = json.loads(invoke("info", "--json", RELEASE / f"{name}.keras").stdout)
    assert described["model"]["cell"] == cell and described["tokenizer"]["kind"] == kind


def _with_record(target, edit, source=RELEASE / "lstm_char.keras"):
    """A copy of ``source`` whose charlm.json ``edit`` changed; every other member as it was."""
    with zipfile.ZipFile(source) as archive:
        members = [(info, archive.read(info.filename)) for info in archive.infolist()]
    with zipfile.ZipFile(target, "w") as archive:
        for info, data in members:
            if info.filename == MEMBER:
                record = json.loads(data)
                edit(record)
                data = json.dumps(record, indent=1).encode()
            archive.writestr(info, data)
    return target


def test_the_record_rewriting_changes_nothing_else(tmp_path):
    """The refusals below come from the edit, not from rewriting the archive."""
    copy = _with_record(tmp_path / "copy.keras", lambda record: None)
    assert charlm.load(copy).tokenizer.vocabulary == charlm.load(RELEASE / "lstm_char.keras").tokenizer.vocabulary


def test_unknown_model_setting_is_refused(tmp_path):
    path = _with_record(tmp_path / "unknown.keras", lambda record: record["model"].update(attention_heads=4))
    with pytest.raises(CharlmError, match="attention_heads") as refused:
        charlm.load(path)
    assert "unknown" in str(refused.value) and "\n" not in str(refused.value)
    assert_one_line_error(invoke("sample", path, "--length", "5"), "unknown.keras", "attention_heads")
    # `charlm info` describes what the file records, without building a model from it.
    described = invoke("info", "--json", path)
    assert described.exit_code == 0, described.output
    assert json.loads(described.stdout)["model"]["attention_heads"] == 4


def test_a_file_from_a_newer_charlm_is_refused(tmp_path):
    path = _with_record(tmp_path / "newer.keras", lambda record: record.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(CharlmError, match="newer charlm"):
        charlm.load(path)
    for command in ("info", "sample"):
        assert_one_line_error(invoke(command, path), "newer.keras", "newer charlm")


@pytest.mark.slow  # starts a subprocess
def test_fresh_process_load_gives_identical_logits(lm, tiny_model_path, tmp_path):
    tokens = lm.tokenizer.encode("the keys to the cabinet are on the table .\n")[None, :]
    logits, _ = lm.logits(tokens)
    np.save(tmp_path / "tokens.npy", tokens)
    np.save(tmp_path / "expected.npy", logits.numpy())
    # Only the .keras file, in a fresh interpreter, with plain Keras loading it.
    lonely = tmp_path / "alone" / "model.keras"
    lonely.parent.mkdir()
    shutil.copyfile(tiny_model_path, lonely)
    script = textwrap.dedent(f"""
        import numpy as np, charlm, keras
        model = keras.saving.load_model({str(lonely)!r})
        tokens = np.load({str(tmp_path / "tokens.npy")!r})
        states = [np.zeros((1, t.shape[-1]), "float32") for t in model.inputs[1:]]
        logits = model([tokens, *states])[0].numpy()
        expected = np.load({str(tmp_path / "expected.npy")!r})
        assert np.array_equal(logits, expected), np.abs(logits - expected).max()
        lm = charlm.load({str(lonely)!r})
        assert lm.tokenizer.kind == "char" and lm.config.cell == "lstm"
        print("identical")
    """)
    result = run_python(script, cwd=tmp_path / "alone")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "identical" in result.stdout

"""Fine-tuning from a model file: ids are never re-mapped, new symbols are reported,
and before the first update the model predicts exactly what the original did."""

import json

import numpy as np
import pytest

import charlm
from charlm.training.observers import Observer
from tests.helpers import BUNDLED_CORPUS, assert_one_line_error, invoke

PROMPT = "the keys to the cabinet are on the table .\n"
NEW_TEXT = "Zürich 1984: Ωmega, ÆØÅ!\n"  # characters the agreement language never uses


class Before(Observer):
    """Logits of the model being trained, for some prompts, before the first update."""

    def __init__(self, prompts):
        self.prompts, self.logits = prompts, {}

    def on_train_begin(self, run):
        for prompt in self.prompts:
            tokens = run.lm.tokenizer.encode(prompt)[None, :]
            self.logits[prompt] = run.lm.logits(tokens)[0].numpy()


@pytest.fixture(scope="module")
def new_corpus(tmp_path_factory):
    """Agreement text with new characters sprinkled through it (training and validation parts)."""
    lines = BUNDLED_CORPUS.read_text(encoding="utf-8")[:8000].splitlines(keepends=True)
    text = "".join(line + (NEW_TEXT if i % 10 == 0 else "") for i, line in enumerate(lines))
    path = tmp_path_factory.mktemp("finetune") / "new.txt"
    path.write_text(text, encoding="utf-8")
    return path


def _new_symbols(corpus, vocabulary):
    """The characters of the corpus's training part (the first 90 %) outside ``vocabulary``,
    in code point order: what --extend-vocab adds."""
    from charlm.data.corpus import split_text

    train, _ = split_text(corpus.read_text(encoding="utf-8"), 0.1)
    return sorted(set(train) - set(vocabulary))


def _fine_tune(corpus, out, observers=(), lines=None, **settings):
    log = lines.append if lines is not None else (lambda line: None)
    return charlm.train(corpus, out, progress=False, log=log, observers=observers,
                        **{"batch_size": 8, "bptt": 32, "max_steps": 3, "val_fraction": 0.1, **settings})


@pytest.mark.slow  # trains
def test_new_characters_map_to_unknown_and_predictions_are_unchanged(tiny_model_path, new_corpus, tmp_path):
    original = charlm.load(tiny_model_path)
    before, lines = Before([PROMPT, NEW_TEXT]), []
    summary = _fine_tune(new_corpus, tmp_path / "ft", [before], lines, init_from=tiny_model_path)
    report = summary["vocabulary"]
    # The characters the run trains and validates on: each part's first multiple of the batch size.
    from charlm.data.corpus import split_text

    parts = split_text(new_corpus.read_text(encoding="utf-8"), 0.1)
    used = "".join(part[: len(part) // 8 * 8] for part in parts)
    known = set(original.tokenizer.vocabulary)
    assert report["total"] == len(used)
    assert report["unknown"] == sum(c not in known for c in used) > 0
    assert report["added"] == [] and report["new_size"] == report["old_size"] == original.tokenizer.vocab_size
    assert any("map to <unk>" in line and "--extend-vocab" in line and "'Z'" in line for line in lines), lines
    for prompt in (PROMPT, NEW_TEXT):
        expected = original.logits(original.tokenizer.encode(prompt)[None, :])[0].numpy()
        np.testing.assert_array_equal(before.logits[prompt], expected)
    tuned = charlm.load(tmp_path / "ft" / "model.keras")
    assert tuned.tokenizer.vocabulary == original.tokenizer.vocabulary
    assert tuned.info["init_from"]["path"] == str(tiny_model_path)


@pytest.mark.slow  # trains
def test_extend_vocab_adds_rows_and_keeps_old_ids_and_predictions(tiny_model_path, new_corpus, tmp_path):
    original = charlm.load(tiny_model_path)
    old = original.tokenizer
    before, lines = Before([PROMPT, NEW_TEXT]), []
    summary = _fine_tune(new_corpus, tmp_path / "ft", [before], lines, init_from=tiny_model_path,
                         extend_vocab=True)
    added = summary["vocabulary"]["added"]
    assert set("Zü1984:ΩÆØÅ!") - set(old.vocabulary) <= set(added)
    assert added == _new_symbols(new_corpus, old.vocabulary)  # code point order, as a vocabulary is built
    assert any("--extend-vocab added" in line for line in lines), lines
    tuned = charlm.load(tmp_path / "ft" / "model.keras")
    assert tuned.tokenizer.vocabulary == old.vocabulary + added  # no old id moved
    assert tuned.model.outputs[0].shape[-1] == old.vocab_size + len(added)
    # An unchanged prompt: the old symbols' logits are the original model's; the top choice is the same.
    expected = original.logits(old.encode(PROMPT)[None, :])[0].numpy()
    got = before.logits[PROMPT]
    np.testing.assert_allclose(got[..., : old.vocab_size], expected, rtol=0, atol=1e-5)
    assert (got.argmax(-1) == expected.argmax(-1)).all()
    # New symbols start as <unk>: a prompt with them reads as the original read it with <unk> in their place.
    expected = original.logits(old.encode(NEW_TEXT)[None, :])[0].numpy()
    np.testing.assert_allclose(before.logits[NEW_TEXT][..., : old.vocab_size], expected, rtol=0, atol=1e-5)
    new_logits = before.logits[NEW_TEXT][..., old.vocab_size :]
    np.testing.assert_allclose(new_logits, np.repeat(expected[..., [old.unk_id]], len(added), axis=-1), atol=1e-5)


@pytest.mark.slow  # trains
def test_fine_tuning_on_the_command_line_and_dropout_may_change(tiny_model_path, new_corpus, tmp_path):
    out = tmp_path / "cli"
    result = invoke("train", new_corpus, "--init-from", tiny_model_path, "--out", out, "--extend-vocab",
                    "--dropout", "0.3", "--max-steps", "2", "--batch-size", "8", "--bptt", "32",
                    "--val-fraction", "0.1", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    old = charlm.load(tiny_model_path).tokenizer.vocabulary
    assert summary["vocabulary"]["added"] == _new_symbols(new_corpus, old)
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["dropout"] == 0.3 and config["model"]["hidden"] == 32  # the tiny model's width
    assert config["init_from"] == {"path": str(tiny_model_path), "extend_vocab": True}


@pytest.mark.parametrize("flag,value", [("--hidden", 64), ("--cell", "gru"), ("--layers", 3), ("--tokenizer", "word")])
def test_flags_that_contradict_the_model_are_refused(tiny_model_path, new_corpus, tmp_path, flag, value):
    out = tmp_path / "refused"
    result = invoke("train", new_corpus, "--init-from", tiny_model_path, "--out", out, flag, value)
    assert_one_line_error(result, f"{flag} {value} conflicts")
    assert not out.exists()

"""Tests of the agreement language generator and of its committed data."""

from collections import Counter

import pytest

from corpora.agreement import default_corpus_path, default_suite_path
from corpora.agreement import lexicon as lx
from corpora.agreement.generate import main as generate_main
from corpora.agreement.grammar import (
    CONDITIONS,
    MAX_ATTRACTORS,
    generate_corpus,
    generate_suites,
    missing_words,
)
from corpora.agreement.suite_tsv import COLUMNS, read_suite, write_suite

N_PER_CONDITION = 24  # a multiple of 8, so every (n_attractors, number) cell is balanced


@pytest.fixture(scope="module")
def corpus():
    return generate_corpus(3000, seed=1)


@pytest.fixture(scope="module")
def suites(corpus):
    return generate_suites(N_PER_CONDITION, seed=1, exclude=set(corpus))


def all_items(suites):
    return [item for items in suites.values() for item in items]


def intervening_noun_numbers(item):
    """Numbers of the nouns between the subject and the tested verb, read off the words."""
    numbers = [lx.noun_number(w) for w in item.prefix.split() if lx.noun_number(w)]
    # In "the mechanic said the author laughs" the subject is the second noun.
    head = 1 if item.condition == "sent_complement" else 0
    assert numbers[head] == item.subj_number, item
    return numbers[head + 1:]


def check_items(items):
    for item in items:
        assert item.correct != item.wrong
        assert lx.verb_number(item.correct) == item.subj_number, item
        singular, plural = (item.correct, item.wrong) if item.subj_number == lx.SG else (item.wrong, item.correct)
        assert lx.is_verb_pair(singular, plural), item
        intervening = intervening_noun_numbers(item)
        assert sum(n != item.subj_number for n in intervening) == item.n_attractors, item
        assert 0 <= item.n_attractors <= MAX_ATTRACTORS[item.condition]
        assert item.prefix == item.prefix.strip() and item.suffix.endswith(".")
        if item.condition == "pp_attractor":
            assert 1 <= len(intervening) <= 3


def check_balance(suites, n_per_condition):
    assert tuple(suites) == CONDITIONS
    for condition, items in suites.items():
        assert len(items) == n_per_condition
        assert all(item.condition == condition for item in items)
        cells = Counter((item.n_attractors, item.subj_number) for item in items)
        expected = {(k, n) for k in range(MAX_ATTRACTORS[condition] + 1) for n in lx.NUMBERS}
        assert set(cells) == expected, condition
        assert len(set(cells.values())) == 1, (condition, cells)


def test_corpus_is_deterministic_by_seed():
    assert generate_corpus(200, seed=1) == generate_corpus(200, seed=1)
    assert generate_corpus(200, seed=1) != generate_corpus(200, seed=2)


def test_suites_are_deterministic_by_seed():
    assert generate_suites(8, seed=1) == generate_suites(8, seed=1)
    assert generate_suites(8, seed=1) != generate_suites(8, seed=2)


def test_corpus_format(corpus):
    for line in corpus:
        assert line == line.lower() and line.endswith(" .")
        assert line.split(" ") == line.split(), "words are separated by single spaces"
        assert "\t" not in line and "\n" not in line


def test_lexicon_word_classes_are_disjoint():
    nouns = [n.form(num) for n in lx.ANIMATE_NOUNS + lx.THING_NOUNS for num in lx.NUMBERS]
    verbs = {v.form(num) for v in lx.ALL_VERBS for num in lx.NUMBERS} | lx.PAST_FORMS
    adjectives = set(lx.ANIMATE_ADJECTIVES + lx.THING_ADJECTIVES)
    assert len(nouns) == len(set(nouns)), "every noun form belongs to one noun and one number"
    classes = [set(nouns), verbs, adjectives, lx.FUNCTION_WORDS]
    for i, a in enumerate(classes):
        for b in classes[i + 1:]:
            assert not a & b
    assert all(v.sg != v.pl for v in lx.ALL_VERBS)
    assert {"men", "children", "mice", "people", "women", "feet"} <= set(nouns)


def test_suites_are_disjoint_from_training(corpus, suites):
    sentences = [item.sentence() for item in all_items(suites)]
    assert not set(sentences) & set(corpus)
    assert len(sentences) == len(set(sentences))


def test_items_are_valid(suites):
    check_items(all_items(suites))


def test_conditions_present_and_balanced(suites):
    check_balance(suites, N_PER_CONDITION)


def test_items_use_training_vocabulary(corpus, suites):
    assert missing_words(all_items(suites), corpus) == set()


def test_tsv_round_trip(tmp_path, suites):
    path = tmp_path / "suite.tsv"
    write_suite(path, all_items(suites))
    assert read_suite(path) == all_items(suites)
    path.write_text("prefix\tcorrect\n")
    with pytest.raises(ValueError):
        read_suite(path)


def test_command_line(tmp_path):
    assert generate_main(["--out", str(tmp_path), "--train-sentences", "3000",
                          "--test-per-condition", "8", "--seed", "3", "--per-condition"]) == 0
    train = (tmp_path / "train.txt").read_text().splitlines()
    assert train == generate_corpus(3000, seed=3)
    assert len(read_suite(tmp_path / "agreement.tsv")) == 8 * len(CONDITIONS)
    for condition in CONDITIONS:
        assert len(read_suite(tmp_path / f"{condition}.tsv")) == 8
    gym = sorted(p.stem for p in (tmp_path / "agreement_syntaxgym").iterdir())
    assert gym == sorted(CONDITIONS)


def test_command_line_refuses_unseen_vocabulary(tmp_path):
    assert generate_main(["--out", str(tmp_path), "--train-sentences", "20", "--test-per-condition", "8"]) == 1
    assert not (tmp_path / "train.txt").exists()


def test_committed_data():
    corpus_path, suite_path = default_corpus_path(), default_suite_path()
    assert corpus_path.is_absolute() and suite_path.is_absolute()
    assert 1_500_000 <= corpus_path.stat().st_size <= 3_000_000
    assert suite_path.stat().st_size < 5_000_000
    train = corpus_path.read_text(encoding="utf-8").splitlines()
    assert sum(len(line) > 100 for line in train) > 100

    assert suite_path.read_text(encoding="utf-8").split("\n", 1)[0].split("\t") == list(COLUMNS)
    items = read_suite(suite_path)
    suites = {c: [item for item in items if item.condition == c] for c in CONDITIONS}
    n_per_condition = len(suites["simple"])
    assert 200 <= n_per_condition <= 500
    check_balance(suites, n_per_condition)
    check_items(items)
    assert not {item.sentence() for item in items} & set(train)
    assert missing_words(items, train) == set()

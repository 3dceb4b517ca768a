"""Tests of the agreement language generator and of its committed data."""

from collections import Counter

import pytest

from corpora.agreement import default_corpus_path, default_suite_path
from corpora.agreement import lexicon as lx
from corpora.agreement.generate import main as generate_main
from corpora.agreement.grammar import (
    CONDITIONS,
    LONG_SPAN,
    MAX_ATTRACTORS,
    characters_between,
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
    """Numbers of the nouns between the subject and the tested verb, read off the words; the
    word at ``subject_index`` is the subject, a noun of the subject's number."""
    words = item.prefix.split()
    assert lx.noun_number(words[item.subject_index]) == item.subj_number, item
    # The subject is the first noun, except in "the mechanic said the author laughs".
    nouns = [k for k, w in enumerate(words) if lx.noun_number(w)]
    assert item.subject_index == nouns[1 if item.condition == "sent_complement" else 0], item
    return [lx.noun_number(w) for w in words[item.subject_index + 1:] if lx.noun_number(w)]


def characters_from_subject_to_verb(item) -> int:
    """Counted in the sentence itself: from the end of the subject's noun to the verb's first letter."""
    sentence, words = item.sentence(), item.prefix.split(" ")
    noun_end = len(" ".join(words[: item.subject_index + 1]))
    verb_start = len(item.prefix) + 1
    assert sentence[verb_start:].startswith(item.correct + " ") and sentence[:noun_end].endswith(
        words[item.subject_index])
    return verb_start - noun_end


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
        if item.condition in LONG_SPAN:
            least, most = LONG_SPAN[item.condition]
            assert (least, most) == (20, 60)
            assert least <= characters_from_subject_to_verb(item) <= most, item
            # One or two prepositional phrases and a relative clause: two or three nouns.
            assert 2 <= len(intervening) <= 3 and "that" in item.prefix.split(), item


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


def test_characters_between_by_hand():
    assert characters_between("the key".split(), 1) == 1  # "the key| |is"
    assert characters_between("the key near the box".split(), 1) == 14  # "| near the box |"
    assert characters_between("the man said the keys".split(), 4) == 1


def test_long_span_conditions_have_their_spread(suites):
    """The long conditions reach past 40 characters (the tail of a distance curve), and
    some of their items have three attractors."""
    for condition in LONG_SPAN:
        spans = [characters_from_subject_to_verb(item) for item in suites[condition]]
        assert max(spans) > 40 and min(spans) >= 20
        assert any(item.n_attractors == 3 for item in suites[condition])


def test_long_span_constructions_are_in_the_training_corpus(corpus):
    """A subject with a prepositional phrase then a relative clause ("the author near the doors
    that ..."), the construction of the long conditions, is common in training sentences."""
    def stacked(line):
        words = line.split()
        return bool(len(words) > 6 and lx.noun_number(words[1]) and words[2] in lx.MODIFIER_PREPOSITIONS
                and "that" in words[5:8])
    assert sum(map(stacked, corpus)) > 0.02 * len(corpus)


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

"""Generator of the agreement language: training sentences and agreement suites.

Sentences are lower-case words separated by single spaces and end with " .".
Training sentences mix the constructions freely; suite items build one
construction at a time with the numbers of the subject and of every
intervening noun under control. Both draw from the same phrase builder and
vocabulary (:mod:`corpora.agreement.lexicon`), and everything is drawn from a
``random.Random(seed)``, so the output is a function of the seed.
"""

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from corpora.agreement import lexicon as lx
from corpora.agreement.lexicon import NUMBERS, Verb, other

# A training sentence is assembled from independent choices; these rates keep
# most sentences simple or with one intervening noun, as in natural text, while
# every construction still occurs a few thousand times in the default corpus.
_ANIMATE_P = 0.6  # subject is a person or animal rather than a thing
_ADJECTIVE_P = 0.1  # a noun phrase gets an adjective
_THE_P = 0.7  # an object noun phrase says "the" rather than a/an/some/many/two
_PAST_COPULA_P = 0.3  # "was/were" rather than "is/are"
_PP_COUNT_WEIGHTS = (0.62, 0.25, 0.09, 0.04)  # 0, 1, 2, 3 prepositional phrases on the subject
_RELATIVE_P = 0.18
_COMPLEMENT_P = 0.12  # "the mechanic said (that) ..."
_COORDINATION_P = 0.12  # "... laughs and swims"
_MAX_EMBEDDING = 2  # sentential complements nest at most this deep

_ANIMATE_VP_KINDS = ("intransitive", "transitive", "copula_adj", "copula_loc", "have", "control")
_THING_VP_KINDS = ("intransitive", "copula_adj", "copula_loc")
_BARE_VP_KINDS = ("intransitive", "transitive", "copula_adj", "copula_loc")
# Verb phrases with exactly one noun (whose number the caller sets), and with none.
_NOUN_VP_KINDS = ("transitive", "copula_loc", "have")
_NOUNLESS_VP_KINDS = ("intransitive", "copula_adj")

CONDITIONS = (
    "simple",
    "pp_attractor",
    "subj_relative",
    "obj_relative",
    "obj_relative_no_that",
    "sent_complement",
    "vp_coordination",
    "pp_obj_relative",
    "pp_subj_relative",
)
MAX_ATTRACTORS = {
    "simple": 0,
    "pp_attractor": 3,
    "subj_relative": 1,
    "obj_relative": 1,
    "obj_relative_no_that": 1,
    "sent_complement": 0,
    "vp_coordination": 1,
    "pp_obj_relative": 3,
    "pp_subj_relative": 3,
}
# Conditions whose subject and verb are kept this many characters apart, (least, most), so that
# accuracy by distance has a tail: one or two prepositional phrases stacked with a relative clause.
LONG_SPAN = {"pp_obj_relative": (20, 60), "pp_subj_relative": (20, 60)}


@dataclass(frozen=True)
class Item:
    """One agreement test: ``prefix`` followed by ``correct`` (or ``wrong``) and ``suffix``.

    ``n_attractors`` counts the nouns between the subject and the verb whose
    number is opposite to the subject's (``subj_number``, "sg" or "pl");
    ``subject_index`` is the 0-based index of the subject's head noun among
    ``prefix.split()``.
    """

    prefix: str
    correct: str
    wrong: str
    suffix: str
    condition: str
    n_attractors: int
    subj_number: str
    subject_index: int

    def sentence(self, verb: str | None = None) -> str:
        """Return the full sentence with ``verb`` (default: the correct form)."""
        words = [self.prefix, verb or self.correct] + ([self.suffix] if self.suffix else [])
        return " ".join(words)


class _Builder:
    """Builds phrases as lists of words; every choice comes from one seeded generator."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def coin(self, p: float = 0.5) -> bool:
        return self.rng.random() < p

    def np(self, number: str, animate: bool | None = None, *,
           adjective: bool = False, determiner: bool = False) -> list[str]:
        """A noun phrase, "the key"; optionally "the old key", "a key", "many keys"."""
        if animate is None:
            animate = self.coin()
        noun = self.rng.choice(lx.ANIMATE_NOUNS if animate else lx.THING_NOUNS)
        words = [noun.form(number)]
        if adjective and self.coin(_ADJECTIVE_P):
            words.insert(0, self.rng.choice(lx.ANIMATE_ADJECTIVES if animate else lx.THING_ADJECTIVES))
        if not determiner or self.coin(_THE_P):
            det = "the"
        elif number == lx.SG:
            det = "an" if words[0][0] in "aeiou" else "a"
        else:
            det = self.rng.choice(lx.PLURAL_DETERMINERS)
        return [det, *words]

    def pp(self, number: str, *, varied: bool = False) -> list[str]:
        """A prepositional phrase modifying a noun, "near the cabinets"."""
        prep = self.rng.choice(lx.MODIFIER_PREPOSITIONS).split()
        return prep + self.np(number, adjective=varied, determiner=varied)

    def transitive_verb(self, object_animate: bool) -> Verb:
        pool = lx.PERSON_OBJECT if object_animate else lx.THING_OBJECT
        return self.rng.choice(pool + lx.ANY_OBJECT)

    def vp(self, number: str, animate: bool, kind: str | None = None, obj_number: str | None = None,
           *, varied: bool = False, finite: bool = True) -> tuple[list[str], Verb]:
        """A verb phrase whose first word is the verb, agreeing with ``number`` if ``finite``.

        ``kind`` picks the shape (see ``_ANIMATE_VP_KINDS``); ``obj_number`` the
        number of its noun, if it has one. Returns the words and the verb.
        """
        rng = self.rng
        kind = kind or rng.choice(_ANIMATE_VP_KINDS if animate else _THING_VP_KINDS)
        obj_number = obj_number or rng.choice(NUMBERS)
        obj = {"adjective": varied, "determiner": varied}
        if kind == "intransitive":
            verb, rest = rng.choice(lx.INTRANSITIVE if animate else lx.THING_INTRANSITIVE), []
        elif kind == "transitive":
            object_animate = self.coin()
            verb = self.transitive_verb(object_animate)
            rest = self.np(obj_number, object_animate, **obj)
        elif kind == "copula_adj":
            verb = lx.COPULA_PAST if self.coin(_PAST_COPULA_P) else lx.COPULA
            rest = [rng.choice(lx.ANIMATE_ADJECTIVES if animate else lx.THING_ADJECTIVES)]
        elif kind == "copula_loc":
            verb = lx.COPULA_PAST if self.coin(_PAST_COPULA_P) else lx.COPULA
            # Things only: "is near the door", never "is in the painter".
            rest = rng.choice(lx.LOCATIVE_PREPOSITIONS).split() + self.np(obj_number, False, **obj)
        elif kind == "have":
            verb, rest = lx.HAVE, self.np(obj_number, False, **obj)
        elif kind == "control":
            verb = rng.choice(lx.CONTROL)
            bare, _ = self.vp(number, True, rng.choice(_BARE_VP_KINDS), obj_number, varied=varied, finite=False)
            rest = ["to", *bare]
        else:
            raise ValueError(f"unknown verb phrase kind {kind!r}")
        return [verb.form(number) if finite else verb.base, *rest], verb

    def subject_relative(self, number: str, animate: bool, kind: str | None = None,
                         obj_number: str | None = None, *, varied: bool = False,
                         comp: str = "that") -> list[str]:
        """A subject relative clause on a head of ``number``, "that likes the guards"."""
        words, _ = self.vp(number, animate, kind, obj_number, varied=varied)
        return [comp, *words]

    def object_relative(self, head_animate: bool, rc_number: str, *, varied: bool = False,
                        comp: str | None = "that") -> list[str]:
        """An object relative clause whose subject has ``rc_number``, "(that) the guards like"."""
        verb = self.transitive_verb(head_animate)
        words = self.np(rc_number, True, adjective=varied, determiner=varied) + [verb.form(rc_number)]
        return ([comp] if comp else []) + words


# --- training corpus -------------------------------------------------------


def _training_subject(b: _Builder, number: str, animate: bool) -> list[str]:
    """A subject noun phrase with random prepositional phrases and relative clause."""
    rng = b.rng
    words = b.np(number, animate, adjective=True)
    n_pp = rng.choices(range(len(_PP_COUNT_WEIGHTS)), _PP_COUNT_WEIGHTS)[0]
    for _ in range(n_pp):
        words += b.pp(rng.choice(NUMBERS), varied=True)
    if b.coin(_RELATIVE_P):
        if b.coin():
            comp = "who" if animate and b.coin(0.3) else "that"
            words += b.subject_relative(number, animate, varied=True, comp=comp)
        else:
            comp = rng.choice(("that", "who") if animate else ("that",)) if b.coin(0.7) else None
            words += b.object_relative(animate, rng.choice(NUMBERS), varied=True, comp=comp)
    return words


def _training_clause(b: _Builder, depth: int = 0) -> list[str]:
    """A random clause: possibly a sentential complement, possibly coordinated verbs."""
    number = b.rng.choice(NUMBERS)
    if depth < _MAX_EMBEDDING and b.coin(_COMPLEMENT_P):
        verb, past = b.rng.choice(lx.SAY)
        words = _training_subject(b, number, True) + [past if b.coin() else verb.form(number)]
        return words + (["that"] if b.coin(0.3) else []) + _training_clause(b, depth + 1)
    animate = b.coin(_ANIMATE_P)
    words = _training_subject(b, number, animate) + b.vp(number, animate, varied=True)[0]
    if b.coin(_COORDINATION_P):
        words += ["and", *b.vp(number, animate, varied=True)[0]]
    return words


def generate_corpus(n_sentences: int, seed: int) -> list[str]:
    """Return ``n_sentences`` random training sentences (may repeat), one string each.

    The same ``seed`` always gives the same list; ``generate_corpus(200, seed=1)``
    is a quick fixture-size corpus.
    """
    b = _Builder(random.Random(seed))
    return [" ".join(_training_clause(b) + ["."]) for _ in range(n_sentences)]


# --- agreement suites -------------------------------------------------------
# Each builder returns (words before the tested verb, the index of the subject's head noun
# among them, verb phrase, its verb) for a subject of ``number`` with exactly
# ``n_attractors`` intervening nouns of the other number. Suites use only "the" and no
# adjectives, so that noun inflection is the only number cue, and a subject noun phrase
# is two words, "the key": its head is the second.

_Built = tuple[list[str], int, list[str], Verb]


def _intervening(number: str, n_nouns: int, n_attractors: int, rng: random.Random) -> list[str]:
    """Numbers of ``n_nouns`` intervening nouns, ``n_attractors`` of them opposite to ``number``."""
    opposite = set(rng.sample(range(n_nouns), n_attractors))
    return [other(number) if i in opposite else number for i in range(n_nouns)]


def _simple(b: _Builder, number: str, n_attractors: int) -> _Built:
    animate = b.coin()
    return b.np(number, animate), 1, *b.vp(number, animate)


def _pp_attractor(b: _Builder, number: str, n_attractors: int) -> _Built:
    animate = b.coin()
    words = b.np(number, animate)
    for pp_number in _intervening(number, b.rng.randint(max(1, n_attractors), 3), n_attractors, b.rng):
        words += b.pp(pp_number)
    return words, 1, *b.vp(number, animate)


def _subj_relative(b: _Builder, number: str, n_attractors: int) -> _Built:
    obj_number = other(number) if n_attractors else number
    words = b.np(number, True) + b.subject_relative(number, True, "transitive", obj_number)
    return words, 1, *b.vp(number, True)


def _obj_relative(comp: str | None) -> Callable[[_Builder, str, int], _Built]:
    def build(b: _Builder, number: str, n_attractors: int) -> _Built:
        animate = b.coin()
        rc_number = other(number) if n_attractors else number
        words = b.np(number, animate) + b.object_relative(animate, rc_number, comp=comp)
        return words, 1, *b.vp(number, animate)
    return build


def _sent_complement(b: _Builder, number: str, n_attractors: int) -> _Built:
    # The matrix verb is past tense, so the only agreeing verb is the tested one.
    _, past = b.rng.choice(lx.SAY)
    animate = b.coin()
    words = b.np(b.rng.choice(NUMBERS), True) + [past] + b.np(number, animate)
    return words, 4, *b.vp(number, animate)


def _vp_coordination(b: _Builder, number: str, n_attractors: int) -> _Built:
    if n_attractors or b.coin():
        obj_number = other(number) if n_attractors else number
        first, _ = b.vp(number, True, b.rng.choice(_NOUN_VP_KINDS), obj_number)
    else:
        first, _ = b.vp(number, True, b.rng.choice(_NOUNLESS_VP_KINDS))
    return b.np(number, True) + first + ["and"], 1, *b.vp(number, True)


def _pp_relative(relative: str) -> Callable[[_Builder, str, int], _Built]:
    """One or two prepositional phrases, then a relative clause with one noun, on the subject:
    "the author near the doors that the guards like" (``relative`` "object") or "the author
    near the doors that likes the guards" ("subject")."""
    def build(b: _Builder, number: str, n_attractors: int) -> _Built:
        animate = b.coin()
        *pp_numbers, rc_number = _intervening(number, b.rng.randint(max(2, n_attractors), 3), n_attractors, b.rng)
        words = b.np(number, animate)
        for pp_number in pp_numbers:
            words += b.pp(pp_number)
        if relative == "object":
            words += b.object_relative(animate, rc_number)
        else:
            kind = b.rng.choice(_NOUN_VP_KINDS) if animate else "copula_loc"  # things are, authors also own
            words += b.subject_relative(number, animate, kind, rc_number)
        return words, 1, *b.vp(number, animate)
    return build


_SUITE_BUILDERS: dict[str, Callable[[_Builder, str, int], _Built]] = {
    "simple": _simple,
    "pp_attractor": _pp_attractor,
    "subj_relative": _subj_relative,
    "obj_relative": _obj_relative("that"),
    "obj_relative_no_that": _obj_relative(None),
    "sent_complement": _sent_complement,
    "vp_coordination": _vp_coordination,
    "pp_obj_relative": _pp_relative("object"),
    "pp_subj_relative": _pp_relative("subject"),
}

_MAX_TRIES = 1000  # fresh draws per item before giving up on finding an unseen sentence


def characters_between(prefix: list[str], subject_index: int) -> int:
    """Characters from the end of the subject's head noun to the start of the verb that
    follows ``prefix`` after one space: 1 where the verb follows the noun at once."""
    return len(" ".join(prefix[subject_index + 1:])) + 2 if subject_index + 1 < len(prefix) else 1


def generate_suites(n_per_condition: int, seed: int,
                    exclude: Iterable[str] = frozenset()) -> dict[str, list[Item]]:
    """Return ``n_per_condition`` agreement items for each condition in :data:`CONDITIONS`.

    Items cycle through the cells (n_attractors, subject number), 0..MAX_ATTRACTORS
    by sg/pl, so each condition is balanced when ``n_per_condition`` is a
    multiple of its number of cells (any multiple of 8 balances them all). No
    item's sentence is in ``exclude`` (pass the training sentences) or repeats
    another item's; the conditions of :data:`LONG_SPAN` keep their subject and verb
    as many characters apart as it says.
    """
    b = _Builder(random.Random(seed))
    excluded = exclude if isinstance(exclude, (set, frozenset)) else set(exclude)
    seen: set[str] = set()
    suites = {}
    for condition in CONDITIONS:
        build = _SUITE_BUILDERS[condition]
        least, most = LONG_SPAN.get(condition, (1, float("inf")))
        cells = [(k, num) for k in range(MAX_ATTRACTORS[condition] + 1) for num in NUMBERS]
        items = []
        for i in range(n_per_condition):
            n_attractors, number = cells[i % len(cells)]
            for _ in range(_MAX_TRIES):
                prefix, subject, vp, verb = build(b, number, n_attractors)
                item = Item(" ".join(prefix), vp[0], verb.form(other(number)), " ".join(vp[1:] + ["."]),
                            condition, n_attractors, number, subject)
                if (least <= characters_between(prefix, subject) <= most
                        and item.sentence() not in excluded and item.sentence() not in seen):
                    break
            else:
                raise RuntimeError(f"no unseen {condition} sentence after {_MAX_TRIES} tries")
            seen.add(item.sentence())
            items.append(item)
        suites[condition] = items
    return suites


def missing_words(items: Iterable[Item], corpus: Iterable[str]) -> set[str]:
    """Return the words of the items (both verb forms included) that the corpus never uses."""
    vocabulary = {w for line in corpus for w in line.split()}
    used = {w for item in items for w in f"{item.sentence()} {item.wrong}".split()}
    return used - vocabulary

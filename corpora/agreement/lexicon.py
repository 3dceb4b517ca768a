"""Vocabulary of the agreement language.

Every noun and every agreeing verb is a singular/plural pair. Nouns, verbs,
adjectives and function words are disjoint sets of words, so the number of a
word can be read off the word alone (see :func:`noun_number`, :func:`verb_number`).
"""

from dataclasses import dataclass

SG, PL = "sg", "pl"
NUMBERS = (SG, PL)


def other(number: str) -> str:
    """Return the opposite grammatical number: ``"sg"`` <-> ``"pl"``."""
    return PL if number == SG else SG


@dataclass(frozen=True)
class Noun:
    """A noun with its singular and plural forms."""

    sg: str
    pl: str
    animate: bool

    def form(self, number: str) -> str:
        """Return the form of this noun for ``number``."""
        return self.sg if number == SG else self.pl


@dataclass(frozen=True)
class Verb:
    """A present-tense verb: third person singular, plural, and bare infinitive."""

    sg: str
    pl: str
    base: str

    def form(self, number: str) -> str:
        """Return the finite form of this verb agreeing with a subject of ``number``."""
        return self.sg if number == SG else self.pl


_IRREGULAR_PLURALS = {
    "man": "men", "woman": "women", "child": "children", "person": "people",
    "mouse": "mice", "goose": "geese", "wolf": "wolves", "thief": "thieves",
    "shelf": "shelves", "knife": "knives", "leaf": "leaves", "foot": "feet",
    "tooth": "teeth",
}


def _add_s(word: str) -> str:
    """English -s suffix, shared by regular plurals and third-person verbs."""
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _nouns(words: str, animate: bool) -> tuple[Noun, ...]:
    return tuple(Noun(w, _IRREGULAR_PLURALS.get(w, _add_s(w)), animate) for w in words.split())


def _verbs(words: str) -> tuple[Verb, ...]:
    return tuple(Verb(_add_s(w), w, w) for w in words.split())


ANIMATE_NOUNS = _nouns(
    "author pilot surgeon farmer senator dancer teacher doctor mechanic guard lawyer"
    " student officer painter singer baker nurse driver manager customer minister"
    " soldier actor architect banker man woman child person mouse goose wolf thief",
    animate=True,
)
THING_NOUNS = _nouns(
    "key table cabinet door box window book letter picture bottle chair lamp coin"
    " house garden road bridge bus glass church bench city story car tower shelf"
    " knife leaf foot tooth",
    animate=False,
)

COPULA = Verb("is", "are", "be")
COPULA_PAST = Verb("was", "were", "be")
HAVE = Verb("has", "have", "have")

# Verbs are grouped by what their subject and object can be, so that sentences
# stay roughly sensible: keys fall, authors laugh, authors open boxes.
INTRANSITIVE = _verbs("laugh swim smile sleep run sing dance wait talk work jump cry arrive travel relax")
THING_INTRANSITIVE = _verbs("fall shake move roll shine")
PERSON_OBJECT = _verbs("thank help trust blame teach meet call follow visit")
THING_OBJECT = _verbs("open fix carry paint buy sell break clean hide build own")
ANY_OBJECT = _verbs("like see want need find watch hate love admire remember")
CONTROL = _verbs("like love hate want need try")  # "likes to" + bare verb phrase
# Verbs taking a sentential complement, with their past forms, which do not agree.
SAY = tuple(zip(
    _verbs("say think know believe claim hope"),
    ("said", "thought", "knew", "believed", "claimed", "hoped"),
))

ANIMATE_ADJECTIVES = tuple(
    "happy tired young tall busy angry brave calm hungry famous polite nervous".split()
)
THING_ADJECTIVES = tuple("old new small large heavy broken dusty red empty cheap".split())

LOCATIVE_PREPOSITIONS = ("on", "under", "near", "behind", "beside", "above", "in", "next to")
MODIFIER_PREPOSITIONS = (
    "near", "behind", "beside", "next to", "with", "from", "by", "of", "to", "above", "under", "on",
)
PLURAL_DETERMINERS = ("some", "many", "two")
FUNCTION_WORDS = frozenset(
    {"the", "a", "an", "that", "who", "and", "to", "."}
    | set(PLURAL_DETERMINERS)
    | {w for p in LOCATIVE_PREPOSITIONS + MODIFIER_PREPOSITIONS for w in p.split()}
)

ALL_VERBS = tuple(dict.fromkeys(
    (COPULA, COPULA_PAST, HAVE, *INTRANSITIVE, *THING_INTRANSITIVE, *PERSON_OBJECT,
     *THING_OBJECT, *ANY_OBJECT, *CONTROL, *(verb for verb, _ in SAY))
))
PAST_FORMS = frozenset(past for _, past in SAY)

_NOUN_NUMBER = {n.form(num): num for n in ANIMATE_NOUNS + THING_NOUNS for num in NUMBERS}
_VERB_NUMBER = {v.form(num): num for v in ALL_VERBS for num in NUMBERS}


def noun_number(word: str) -> str | None:
    """Return ``"sg"`` or ``"pl"`` if ``word`` is a noun of the language, else ``None``."""
    return _NOUN_NUMBER.get(word)


def verb_number(word: str) -> str | None:
    """Return the number a finite verb form agrees with, or ``None`` for other words.

    Bare infinitives ("to run") look like plural forms; callers that care must
    look at the context.
    """
    return _VERB_NUMBER.get(word)


def is_verb_pair(singular: str, plural: str) -> bool:
    """Return whether ``singular``/``plural`` are the two finite forms of one verb."""
    return any(v.sg == singular and v.pl == plural for v in ALL_VERBS)

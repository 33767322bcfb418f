"""Cheap checks that veto a semantic cache hit an embedding cannot be trusted with.

Sentence embeddings place "what is 15% of 80" next to "what is 15% of 90", and
"is it safe to…" next to "is it unsafe to…": the words that change the answer
barely move the vector. The semantic cache therefore asks `compatible` about a
candidate only after its cosine similarity passed the threshold; the guard
rejects pairs whose texts differ in a way that usually changes the answer:

- numbers: the multisets of numbers differ ("1,000" = "1000", "ten" = "10",
  "second" = "2nd" = "2", "II" = "2"; "one" is left out: it is more often a
  pronoun than a count);
- operators: both have arithmetic or comparison operators, not the same ones
  ("2x + 3" / "2x - 3", "==" / "!=");
- negation: one text is negated (not, no, never, without, unable, …n't,
  "gluten-free") and the other not;
- opposites: one text has a word and the other its opposite instead
  (increase/decrease, min/max, on/off, …), or the same word with a negating
  prefix (safe/unsafe, legal/illegal, install/uninstall);
- units: each names a unit the other does not ("10 inches" / "10 feet"; "km" = "kilometers");
- names: each text has a name or identifier the other lacks (Python/JavaScript,
  Paris/Rome, useState/useEffect): capitalised words past a sentence's start,
  camelCase, snake_case, dotted names, compared case-insensitively;
- order: the same words in another order ("from checking to savings" / "from
  savings to checking", "15% of 80" / "80% of 15");
- direction: each converts to what the other converts from ("Celsius to
  Fahrenheit" / "Fahrenheit to Celsius", with other words around them);
- quotes: each quotes something the other does not have ("thank you" / "excuse me").

bench/semantic_threshold.py measures it: on its labelled pairs the default
checks reject about 3% of paraphrases and 60% of near-misses; `strict=True`
(one-word substitutions) about 12% and 93%. Pure functions of the two texts, no
model; about 0.1-0.2 ms for a new pair of short prompts (each text's features
are kept in a 4096-entry cache, so a repeated text costs a few microseconds).
"""

# Typographic quotes and apostrophes below are meant: users type them.
# ruff: noqa: RUF001

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
# Names and identifiers: letters first, then word characters, and dotted,
# hyphenated or C++/C# tails ("node.js", "GPT-2", "C#").
_TOKEN = re.compile(r"[^\W\d_][\w'’]*(?:[.-]\w+)*[+#]*")
# Where a sentence's first word starts: the text's start, or past . ! ? : ; or a
# line break, then spaces, quotes or brackets.
_SENTENCE_START = re.compile(r"(?:^|[.!?:;\n])[\s\"'“‘(\[]*")
_QUOTED = re.compile(r"\"([^\"]+)\"|“([^”]+)”|(?<!\w)'([^']+)'(?!\w)|‘([^’]+)’")
# Operators, not hyphens: a "-" counts only next to spaces, digits or the text's ends.
_OPERATOR = re.compile(r"[=!<>]=+|[+*/^%<>=]|(?<![^\s\d])-(?![^\s\d])")
_PLAIN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_RUN = re.compile(r"[^\W\d_]+|\d+")
_DEGREES = re.compile(r"\s*°\s*([CcFf])\b")
_FREE_OF = re.compile(r"\w-free\b", re.IGNORECASE)  # "gluten-free": without gluten
_ROMAN = {"II": 2, "III": 3, "IV": 4, "VI": 6, "VII": 7, "VIII": 8, "IX": 9, "XI": 11, "XII": 12}

_NUMBER_WORDS = {
    word: str(value)
    for value, words in enumerate(
        [
            "zero",
            # "one" and "first" are more often a pronoun or an order ("which
            # one", "first, …") than a count.
            "",
            "two second twice squared",
            "three third cubed",
            "four fourth",
            "five fifth",
            "six sixth",
            "seven seventh",
            "eight eighth",
            "nine ninth",
            "ten tenth",
            "eleven eleventh",
            "twelve twelfth dozen",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty twentieth",
        ]
    )
    for word in words.split()
} | {
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "sixty": "60",
    "seventy": "70",
    "eighty": "80",
    "ninety": "90",
    "hundred": "100",
    "thousand": "1000",
    "million": "1000000",
    "billion": "1000000000",
}

_NEGATIONS = frozenset(
    "not no never none nothing nobody nowhere neither nor cannot without "
    "dont doesnt didnt isnt arent wasnt werent cant couldnt shouldnt wouldnt wont "
    "havent hasnt hadnt mustnt neednt aint unable non".split()
)

# Each line: words of one meaning, then "/", then words of the opposite one.
_OPPOSITE_LINES = """
increase increasing increases raise / decrease decreasing decreases lower reduce
min minimum lowest smallest least fewest / max maximum highest largest biggest most
ascending asc / descending desc
up / down
on / off
enable enabled / disable disabled
upload / download
upgrade / downgrade
import / export
encrypt encryption / decrypt decryption
encode / decode
compress / decompress
before / after
buy buying / sell selling
add plus sum / subtract minus difference
multiply times product / divide divided quotient
first earliest oldest / last latest newest recent
start begin beginning started / end ending finish ended
open / close closed
lock / unlock
hot warm / cold cool
good better best / bad worse worst
more / less fewer
over above / under below
inside / outside
push / pull
send sending / receive receiving request
left / right
true / false
uppercase upper / lowercase lower
long longer / short shorter
fast faster / slow slower
cheap cheaper cheapest / expensive
easy easier / hard harder difficult
beginner beginners novice / expert experts advanced
junior / senior
north / south
east / west
win won winner / lose lost loser
positive / negative
even / odd
merge / split
create / delete remove
insert / delete
past / future
yesterday / tomorrow
morning / evening night
am / pm
weekday weekdays / weekend weekends
summer / winter
spring / autumn fall
"""

# Units, by their canonical name: two texts that each name a unit the other
# does not ("10 inches" / "10 feet") ask different things.
_UNIT_ALIASES = """
celsius / fahrenheit / kelvin
kilometer kilometers kilometre kilometres km kms / mile miles mi / meter meters metre metres
centimeter centimeters centimetre centimetres cm / millimeter millimeters mm / inch inches
foot feet ft / yard yards yd
kilogram kilograms kg kgs kilo kilos / gram grams / pound pounds lb lbs / ounce ounces oz
liter liters litre litres / milliliter milliliters ml / gallon gallons gal / cup cups
tablespoon tablespoons tbsp / teaspoon teaspoons tsp / quart quarts
seconds sec secs / minute minutes mins / hour hours hr hrs
day days / week weeks / month months / year years
dollar dollars usd / euro euros eur / gbp sterling / yen jpy / rupee rupees inr
mph / kmh kph
byte bytes / kilobyte kilobytes kb / megabyte megabytes mb / gigabyte gigabytes gb
"""


_ARTICLES = frozenset({"a", "an", "the"})
_NEGATING_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non")
_TARGET_MARKERS = frozenset({"to", "into"})
_SOURCE_MARKERS = frozenset({"from"})
_SKIPPED_AFTER_MARKER = frozenset({"the", "a", "an", "my", "our", "your"})


def _opposites(lines: str) -> dict[str, frozenset[str]]:
    opposite: dict[str, set[str]] = {}
    for line in lines.strip().splitlines():
        left, right = (side.split() for side in line.split("/"))
        for one, others in ((left, right), (right, left)):
            for word in one:
                opposite.setdefault(word, set()).update(others)
    return {word: frozenset(others) for word, others in opposite.items()}


def _units(lines: str) -> dict[str, str]:
    """Each alias -> its unit's first name."""
    return {
        alias: group.split()[0]
        for line in lines.strip().splitlines()
        for group in line.split("/")
        for alias in group.split()
    }


_OPPOSITES = _opposites(_OPPOSITE_LINES)
_UNITS = _units(_UNIT_ALIASES)


@dataclass(frozen=True, slots=True)
class _Features:
    numbers: Counter[str]
    negated: bool
    words: frozenset[str]  # lower case, possessive 's dropped, units by canonical name
    units: frozenset[str]  # canonical names
    names: frozenset[str]  # lower case; parts of dotted or hyphenated names
    tokens: frozenset[str]  # every word and name part, lower case, to look names up in
    targets: frozenset[str]  # names and units right after "to"/"into"
    sources: frozenset[str]  # names and units right after "from"
    quotes: frozenset[str]  # lower case, inner spaces collapsed
    folded: str  # the text in lower case, inner spaces collapsed, to look quotes up in
    sequence: tuple[str, ...]  # letter and digit runs, lower case, units canonical, no articles
    operators: tuple[str, ...]  # + - * / ^ % = == != < > …, in order
    plain: tuple[str, ...]  # words and numbers, lower case, apostrophes dropped, in order


def compatible(a: str, b: str, *, strict: bool = False) -> bool:
    """Whether a cached answer to prompt `a` may answer prompt `b` as far as the
    cheap checks can tell: `conflict(a, b, strict=strict) is None`. Symmetric,
    and always true for two equal texts."""
    return conflict(a, b, strict=strict) is None


def conflict(a: str, b: str, *, strict: bool = False) -> str | None:
    """The first check that tells `a` and `b` apart ("numbers", "operators",
    "negation", "opposites", "units", "names", "order", "direction", "quotes",
    and with `strict` "substitution"), or None if none does. Symmetric; None for
    two equal texts.

    `strict` also rejects two texts that are the same but for one short span
    holding a content word ("soft yolk" / "hard yolk", "read a CSV" / "write a
    CSV"): the commonest near-miss, but also how a synonym paraphrase looks
    ("short poem" / "brief poem"), so it trades recall for precision."""
    if a == b:
        return None
    fa, fb = _features(a), _features(b)
    found = _conflict(fa, fb)
    if found is None and strict and _substituted(fa.plain, fb.plain):
        return "substitution"
    return found


def _conflict(fa: _Features, fb: _Features) -> str | None:
    if fa.numbers != fb.numbers:
        return "numbers"
    if fa.operators and fb.operators and fa.operators != fb.operators:
        return "operators"
    if fa.negated != fb.negated:
        return "negation"
    only_a, only_b = fa.words - fb.words, fb.words - fa.words
    if _opposed(only_a, only_b) or _opposed(only_b, only_a):
        return "opposites"
    if fa.units - fb.units and fb.units - fa.units:
        return "units"
    if fa.names - fb.tokens and fb.names - fa.tokens:
        return "names"
    if _swapped(fa.targets, fb.targets, fa, fb) or _swapped(fa.sources, fb.sources, fa, fb):
        return "direction"
    if fa.sequence != fb.sequence and sorted(fa.sequence) == sorted(fb.sequence):
        return "order"
    if _unquoted(fa.quotes, fb.folded) and _unquoted(fb.quotes, fa.folded):
        return "quotes"
    return None


def _opposed(only_here: frozenset[str], only_there: frozenset[str]) -> bool:
    """A word only here whose opposite, or whose negating-prefix form, is only there."""
    for word in only_here:
        if not only_there.isdisjoint(_OPPOSITES.get(word, ())):
            return True
        if len(word) >= 4 and any(p + word in only_there for p in _NEGATING_PREFIXES):
            return True
    return False


def _substituted(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """The texts share a prefix and a suffix, and between them each has at most
    three words, one of them at least a content word, not a typo of the other's."""
    prefix = 0
    while prefix < min(len(a), len(b)) and a[prefix] == b[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(len(a), len(b)) - prefix and a[-1 - suffix] == b[-1 - suffix]:
        suffix += 1
    middle_a, middle_b = a[prefix : len(a) - suffix], b[prefix : len(b) - suffix]
    if len(middle_a) > 3 or len(middle_b) > 3 or prefix + suffix < 2:
        return False
    content = [w for w in (*middle_a, *middle_b) if w not in _FUNCTION_WORDS]
    if not content:
        return False
    return not (len(middle_a) == len(middle_b) == 1 and _typo(middle_a[0], middle_b[0]))


def _typo(a: str, b: str) -> bool:
    """One edit apart, both at least five letters long ("acount" / "account")."""
    if min(len(a), len(b)) < 5 or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def _unquoted(quotes: frozenset[str], folded: str) -> bool:
    """Some quote of one text that the other does not have, quoted or not."""
    return any(q not in folded for q in quotes)


def _swapped(here: frozenset[str], there: frozenset[str], fa: _Features, fb: _Features) -> bool:
    """Each text converts, translates or goes to something the other starts from
    ("Celsius to Fahrenheit" / "Fahrenheit to Celsius")."""
    return bool(here and there and here.isdisjoint(there) and here & fb.words and there & fa.words)


@lru_cache(maxsize=4096)
def _features(text: str) -> _Features:
    text = _DEGREES.sub(lambda m: " celsius" if m.group(1) in "Cc" else " fahrenheit", text)
    words = [_canonical(w) for w in _WORD.findall(text.lower())]
    numbers = Counter(_number(n) for n in _NUMBER.findall(text))
    numbers.update(_NUMBER_WORDS[w] for w in words if w in _NUMBER_WORDS)
    numbers.update(str(_ROMAN[t]) for t in re.findall(r"\b[IVX]{2,4}\b", text) if t in _ROMAN)
    names = frozenset(_names(text))
    units = frozenset(w for w in words if w in _UNITS.values())
    marked = names | units
    return _Features(
        numbers=numbers,
        negated=any(w in _NEGATIONS or w.endswith(("n't", "n’t")) for w in words)
        or _FREE_OF.search(text) is not None,
        words=frozenset(words),
        units=units,
        names=names,
        tokens=frozenset(words).union(
            *(re.split(r"[.-]", t.lower()) for t in _TOKEN.findall(text))
        ),
        targets=_after(words, _TARGET_MARKERS, marked),
        sources=_after(words, _SOURCE_MARKERS, marked),
        quotes=frozenset(_quotes(text)),
        folded=" ".join(text.lower().split()),
        sequence=tuple(_canonical(w) for w in _RUN.findall(text.lower()) if w not in _ARTICLES),
        operators=tuple(_OPERATOR.findall(text)),
        plain=tuple(w.replace("'", "").replace("’", "") for w in _PLAIN.findall(text.lower())),
    )


def _canonical(word: str) -> str:
    """Lower-case word without a possessive 's ("australia's" -> "australia"),
    a unit by its canonical name ("km" -> "kilometer")."""
    if word.endswith(("'s", "’s")):
        word = word[:-2]
    return _UNITS.get(word, word)


def _number(digits: str) -> str:
    """1,000 -> 1000 and 007 -> 7; other forms (versions, decimals) as written."""
    if _THOUSANDS.fullmatch(digits):
        digits = digits.replace(",", "")
    whole, dot, fraction = digits.partition(".")
    return (whole.lstrip("0") or "0") + dot + fraction


def _names(text: str) -> Iterable[str]:
    """Lower-cased names and identifiers: capitalised words past a sentence's
    start, camelCase, snake_case and dotted names. None in an all-caps text."""
    if text.isupper():
        return
    initial = {m.end() for m in _SENTENCE_START.finditer(text)}
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in _ROMAN or token in _NOT_NAMES or token.lower() in _NUMBER_WORDS:
            continue
        identifier = "_" in token or "." in token or any(c.isupper() for c in token[1:])
        if identifier or (token[0].isupper() and match.start() not in initial):
            for part in re.split(r"[.-]", token.lower()):
                yield _canonical(part)


_NOT_NAMES = frozenset({"I", "I'm", "I've", "I'd", "I'll", "I’m", "I’ve", "I’d", "I’ll"})


def _after(words: list[str], markers: frozenset[str], marked: frozenset[str]) -> frozenset[str]:
    """Marked words right after a marker word, past an article or possessive."""
    found: set[str] = set()
    for i, word in enumerate(words[:-1]):
        if word in markers:
            following = words[i + 1 : i + 3]
            if following[0] in _SKIPPED_AFTER_MARKER and len(following) > 1:
                following = following[1:]
            if following[0] in marked:
                found.add(following[0])
    return frozenset(found)


def _quotes(text: str) -> Iterable[str]:
    for groups in _QUOTED.findall(text):
        quoted = next(g for g in groups if g)
        yield " ".join(quoted.lower().split())


# Words whose presence or absence alone does not change what is asked.
_FUNCTION_WORDS = frozenset(
    """a an the of to in on at for with by from about as into onto over is are was were be
    been being am do does did done doing have has had how what whats which who whom whose
    why when where whats hows can could would should will shall may might must i im ive id
    me my mine we our us you your yours it its this that these those there here and or but
    so then than if please pls plz kindly just also really very quite some any all me
    thanks thank hi hello hey ok okay tell give show explain describe write make help
    need want know get like let lets one way ways best good""".split()
)

# Greek letters below are meant: they test case folding.
# ruff: noqa: RUF001, RUF003
from __future__ import annotations

import dataclasses
import random
import sys
from collections.abc import Iterable
from typing import Any

import pytest
from pydantic import ValidationError

from router.config import FilterConfig
from router.filter import SensitiveWords, StreamFilter, _fold


def words(*terms: str, **options: Any) -> SensitiveWords:
    return SensitiveWords(FilterConfig(terms=terms, **options))


def run(stream: StreamFilter, chunks: Iterable[str]) -> list[str]:
    """Each feed's output, then finish()'s."""
    return [stream.feed(chunk) for chunk in chunks] + [stream.finish()]


def streamed(sw: SensitiveWords, chunks: Iterable[str]) -> tuple[str, bool]:
    stream = sw.stream()
    return "".join(run(stream, chunks)), stream.blocked


# --- masking across chunk boundaries ---------------------------------------------------


def test_term_split_across_two_chunks_is_masked() -> None:
    assert streamed(words("secret"), ["the sec", "ret is out"]) == ("the ****** is out", False)


def test_term_split_across_three_chunks_is_masked() -> None:
    out = run(words("password").stream(), ["my pa", "ssw", "ord: x"])
    assert out == ["my ", "", "********: x", ""]


def test_term_split_char_by_char_is_masked() -> None:
    text = "say badword now"
    assert streamed(words("badword"), list(text)) == ("say ******* now", False)


def test_only_a_possible_term_start_is_held_back() -> None:
    stream = words("badword").stream()
    assert stream.feed("hello b") == "hello "  # "b" could start "badword"
    assert stream.feed("ox ") == "box "  # "box" cannot, so it flows at once
    assert stream.feed("bad") == ""
    assert stream.feed("ge") == "badge"
    assert stream.feed("!") == "!"
    assert stream.finish() == ""


def test_a_whole_term_no_longer_term_starts_with_is_not_held() -> None:
    stream = words("bad", "badword").stream()
    assert stream.feed("so bad") == "so "  # may still become "badword"
    assert words("bad").stream().feed("so bad") == "so ***"


def test_held_tail_is_flushed_by_finish() -> None:
    stream = words("badword").stream()
    assert stream.feed("that was badw") == "that was "
    assert stream.finish() == "badw"


def test_text_without_terms_passes_through_unchanged() -> None:
    text = "Nothing to see here, only ordinary text: bac, bd, wor, ORD. ünïcödé ✓"
    chunks = [text[i : i + 3] for i in range(0, len(text), 3)]
    out = run(words("bad", "word").stream(), chunks)
    assert "".join(out) == text


def test_overlapping_terms_mask_the_union() -> None:
    assert words("abc", "bcd").apply("xabcdx") == ("x****x", False)
    assert streamed(words("abc", "bcd"), ["xa", "b", "cdx"]) == ("x****x", False)


def test_match_ending_in_held_tail_stays_masked_when_tail_is_emitted() -> None:
    # "ab" completes while "b" is held as a possible start of "bcdef"; the held "b"
    # must come out masked although the rescan no longer sees "ab".
    assert streamed(words("ab", "bcdef"), ["xab", "cx"]) == ("x**cx", False)


def test_nested_terms_are_masked() -> None:
    sw = words("bad", "badword")
    assert sw.apply("a badword and a bad one") == ("a ******* and a *** one", False)
    assert streamed(sw, ["a ba", "dwo", "rd and a ba", "d one"])[0] == "a ******* and a *** one"


def test_mask_char_is_configurable() -> None:
    assert words("bad", mask_char="#").apply("so bad") == ("so ###", False)


# --- blocking --------------------------------------------------------------------------


def test_block_emits_only_the_text_before_the_term_then_nothing() -> None:
    stream = words("secret", action="block").stream()
    assert stream.feed("the answer is ") == "the answer is "
    assert stream.feed("sec") == ""
    assert not stream.blocked
    assert stream.feed("ret: 42") == ""
    assert stream.blocked
    assert stream.feed(" more text") == ""
    assert stream.finish() == ""


def test_block_emits_held_prefix_before_the_term_start() -> None:
    stream = words("secret", action="block").stream()
    assert run(stream, ["abc sec", "xx secret yy"]) == ["abc ", "secxx ", ""]
    assert stream.blocked


def test_block_when_term_completes_before_longer_one_could() -> None:
    sw = words("bad", "badword", action="block")
    assert sw.apply("so badword") == ("so ", True)
    # at the same last character the longest term wins: it starts first
    assert words("word", "badword", action="block").apply("x badword") == ("x ", True)


def test_block_without_terms_is_not_blocked() -> None:
    assert words("bad", action="block").apply("all good") == ("all good", False)


# --- case-insensitivity ----------------------------------------------------------------


def test_matching_ignores_ascii_case_by_default() -> None:
    assert words("BadWord").apply("a BADWORD, a badword") == ("a *******, a *******", False)


def test_case_sensitive_matches_exactly() -> None:
    sw = words("Bad", case_sensitive=True)
    assert sw.apply("bad Bad BAD") == ("bad *** BAD", False)


def test_non_ascii_case_is_ignored() -> None:
    sw = words("Ärger")
    assert sw.apply("ÄRGER, ärger, Ärger") == ("*****, *****, *****", False)
    assert streamed(sw, ["viel ä", "RGE", "r"]) == ("viel *****", False)


def test_sharp_s_matches_only_its_own_case_forms() -> None:
    # lower() keeps lengths, casefold() would not ("ß" -> "ss"); so "ss" is not "ß".
    sw = words("Straße")
    assert sw.apply("straße STRAẞE Straße") == ("****** ****** ******", False)
    assert sw.apply("STRASSE strasse") == ("STRASSE strasse", False)


def test_final_sigma_matches_whatever_the_chunk_boundary() -> None:
    sw = words("ΟΔΟΣ")
    assert sw.apply("οδος ΟΔΟΣ Οδοσ") == ("**** **** ****", False)
    # "Σ" at a chunk end lowers to final "ς"; in the whole text it would be "σ"
    assert streamed(sw, ["ΑΟΔΟΣ", "Α"]) == sw.apply("ΑΟΔΟΣΑ") == ("Α****Α", False)


def test_dotted_capital_i_keeps_masks_aligned() -> None:
    # "İ".lower() is two characters; folding it to "i" keeps one character.
    assert words("istanbul").apply("İSTANBUL!") == ("********!", False)


def test_folding_keeps_every_length() -> None:
    everything = "".join(map(chr, range(sys.maxunicode + 1)))
    assert len(_fold(everything)) == len(everything)
    assert _fold("ΟΔΟΣ") == _fold("οδοσ") == _fold("οδος")


# --- streaming equals whole-text filtering, however the text is chunked ---------------

TERMS = ("bad", "badword", "abc", "bcd", "Ärger", "ΟΔΟΣ", "wordy", "d")
TEXT = (
    "abcd badwordy ÄRGER bad-word abcbcd οδος ΟΔΟΣΑ xbadwordbad ärgerlich "
    "nothing here, just plain text; dd bbadd badwor abc."
)


def expected(text: str, terms: Iterable[str], action: str) -> tuple[str, bool]:
    """A brute-force reference: every occurrence of every term, found by slicing."""
    folded = _fold(text)
    spans = [
        (start, start + len(term))
        for term in map(_fold, terms)
        for start in range(len(text))
        if folded.startswith(term, start)
    ]
    if action == "block":
        if not spans:
            return text, False
        first_end = min(end for _, end in spans)
        return text[: min(s for s, end in spans if end == first_end)], True
    masked = list(text)
    for start, end in spans:
        masked[start:end] = "*" * (end - start)
    return "".join(masked), False


def random_chunks(text: str, rng: random.Random) -> list[str]:
    chunks, i = [], 0
    while i < len(text):
        size = rng.choice([0, 1, 1, 2, 3, 5, 8, 20])
        chunks.append(text[i : i + size])
        i += size
    return chunks


@pytest.mark.parametrize("action", ["mask", "block"])
def test_any_chunking_gives_the_whole_text_result(action: str) -> None:
    sw = words(*TERMS, action=action)
    whole = sw.apply(TEXT)
    assert whole == expected(TEXT, TERMS, action)
    for seed in range(500):
        assert streamed(sw, random_chunks(TEXT, random.Random(seed))) == whole, seed


@pytest.mark.parametrize("action", ["mask", "block"])
def test_random_texts_match_the_reference(action: str) -> None:
    rng = random.Random(7)
    sw = words(*TERMS, action=action)
    for _ in range(300):
        text = "".join(rng.choice("abcdwoyrÄäΣσςοδΟΔ x") for _ in range(rng.randint(0, 40)))
        assert streamed(sw, random_chunks(text, rng)) == expected(text, TERMS, action), text


def test_held_tail_never_exceeds_longest_term_minus_one() -> None:
    stream = words("abcdefgh", "xyz").stream()
    emitted = ""
    text = "abcdefg" * 20
    for i, char in enumerate(text):
        emitted += stream.feed(char)
        assert i + 1 - len(emitted) <= 7


# --- sharing and config ----------------------------------------------------------------


def test_streams_from_one_automaton_are_independent() -> None:
    sw = words("secret")
    first, second = sw.stream(), sw.stream()
    assert first.feed("a sec") == "a "
    assert second.feed("ret") == "ret"
    assert first.feed("ret") == "******"
    assert first.finish() == second.finish() == ""


def test_sensitive_words_cannot_be_changed() -> None:
    sw = words("bad")
    with pytest.raises(dataclasses.FrozenInstanceError):
        sw.config = FilterConfig(terms=("good",))  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"terms": ()}, "at least one term"),
        ({"terms": ("ok", "")}, r"empty or blank \(positions \[1\]\)"),
        ({"terms": ("  ",)}, "empty or blank"),
        ({"terms": ("ok",), "mask_char": ""}, "exactly one character"),
        ({"terms": ("ok",), "mask_char": "**"}, "exactly one character"),
        ({"terms": ("ok",), "action": "drop"}, "action"),
        ({"terms": ("ok",), "colour": "red"}, "colour"),
    ],
)
def test_bad_config_is_rejected_with_a_clear_message(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FilterConfig(**options)


# --- issue 14 (mutation testing): gaps the mutants showed -----------------------------------


def test_after_finish_the_filter_starts_afresh() -> None:
    """A stream may go on after the chunk that flushed it (a usage chunk, say)."""
    stream = words("ab").stream()
    assert stream.feed("xa") == "x"
    assert stream.finish() == "a"
    assert stream.feed("ab") == "**"
    assert stream.finish() == ""

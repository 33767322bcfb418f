"""The chunker: sizes in the model's own tokens, boundaries, overlap, metadata."""

from __future__ import annotations

import itertools
import re

import pytest

from indexer.chunker import Chunker
from indexer.hashed_embedder import wordpiece_tokenizer
from indexer.section import Section

TOKENIZER = wordpiece_tokenizer(["the", "cat", "sat", "on", "mat", "dogs", "bark", "at", "night"])


def chunker(tokens: int, overlap: int = 0, max_tokens: int = 512) -> Chunker:
    return Chunker(TOKENIZER, max_tokens, tokens, overlap)


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def test_short_text_is_one_chunk() -> None:
    pieces = chunker(64).split("  The cat sat on the mat.  ")
    assert pieces == [("The cat sat on the mat.", 7)]


def test_size_is_bounded_by_the_model_and_never_exceeded() -> None:
    small = chunker(1000, max_tokens=40)
    assert small.size == 38  # [CLS] and [SEP] take two of the model's 40
    text = " ".join(f"word{i} xyzzy{i}." for i in range(300))
    pieces = small.split(text)
    assert all(small.count(p) == n <= 38 for p, n in pieces)
    # Nothing is lost: every word of the text is in some chunk, in order.
    assert words(" ".join(p for p, _ in pieces)) == words(text)


def test_cuts_at_paragraphs_then_sentences() -> None:
    paragraph = "The cat sat on the mat. Dogs bark at night."  # 13 tokens
    text = "\n\n".join([paragraph] * 4)
    pieces = chunker(30).split(text)
    assert [p for p, _ in pieces] == ["\n\n".join([paragraph] * 2)] * 2
    long_paragraph = " ".join(["The cat sat on the mat."] * 10)  # 70 tokens, one paragraph
    pieces = chunker(20).split(long_paragraph)
    assert all(p.endswith("mat.") and p.startswith("The cat") for p, _ in pieces)


def test_falls_back_to_words_then_tokens() -> None:
    no_sentences = " ".join(["cat"] * 100)
    pieces = chunker(30).split(no_sentences)
    assert [n for _, n in pieces] == [30, 30, 30, 10]
    one_word = "x" * 90  # 90 character tokens, no space anywhere
    pieces = chunker(40).split(one_word)
    assert "".join(p for p, _ in pieces) == one_word
    assert max(n for _, n in pieces) <= 40


def test_overlap_repeats_the_tail_of_the_previous_chunk() -> None:
    text = " ".join(f"w{i}" for i in range(120))  # each "wN" is 2+ tokens
    plain = chunker(40, overlap=0).split(text)
    overlapping = chunker(40, overlap=10).split(text)
    assert len(overlapping) > len(plain)
    for (first, _), (second, _) in itertools.pairwise(overlapping):
        head, tail = words(first), words(second)
        shared = len(head) - head.index(tail[0])  # second starts inside first...
        assert 2 <= shared <= 5  # ...about 10 tokens (2-3 tokens a word) before its end
        assert head[-shared:] == tail[:shared]


def test_overlap_is_exactly_its_size_in_tokens_where_every_word_is_one() -> None:
    pieces = chunker(30, overlap=10).split(" ".join(["cat"] * 100))
    # Starts 0, 20, 40, 60, 80: each chunk begins 10 tokens before the last ended.
    assert [n for _, n in pieces] == [30, 30, 30, 30, 20]
    assert [p for p, _ in pieces] == [" ".join(["cat"] * n) for n in (30, 30, 30, 30, 20)]


def test_chunks_keep_page_heading_extra_and_position() -> None:
    sections = [
        Section("The cat sat on the mat. " * 8, page=1),
        Section("Dogs bark at night.", page=2, heading="A > B", extra={"row": 3}),
    ]
    drafts = list(chunker(20).chunks(sections))
    assert [d.position for d in drafts] == list(range(len(drafts)))
    assert drafts[-1].page == 2 and drafts[-1].heading == "A > B"
    assert drafts[-1].extra == {"row": 3}
    assert {d.page for d in drafts[:-1]} == {1}


def test_a_truncating_tokenizer_does_not_fool_the_counts() -> None:
    truncating = wordpiece_tokenizer()
    truncating.enable_truncation(8)
    chunks = Chunker(truncating, 64, 30, 0).split("abcdefghij " * 10)
    assert [n for _, n in chunks] == [30, 30, 30, 10]


def test_a_model_too_small_to_chunk_for_is_refused() -> None:
    with pytest.raises(ValueError, match="too few"):
        Chunker(TOKENIZER, 6, 512, 0)


def test_a_piece_that_grows_out_of_context_is_cut_earlier() -> None:
    """A cut between two tokens of one word (no space to cut at) starts the next
    piece mid-word. Out of context that piece tokenises differently, here into
    more tokens: the continuation "##xxxx" has no word-start form, so a piece
    opening on it costs "x" + ... + "##x" "##x" "##x". The re-tokenising guard
    must shrink the piece until it fits."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordPiece
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"[UNK]": 0, "x": 1, "##xxxx": 2, "##x": 3}
    tokenizer = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=10_000))
    tokenizer.pre_tokenizer = Whitespace()
    text = "x" * (1 + 4 * 30)  # in context: "x" then 30 x "##xxxx" = 31 tokens
    chunker = Chunker(tokenizer, max_tokens=8, tokens=8, overlap=0)
    assert chunker.count(text[4:36]) == 11  # 8 tokens in context, 11 out of it
    pieces = chunker.split(text)
    assert all(tokens <= 8 for _, tokens in pieces)
    assert [chunker.count(p) for p, _ in pieces] == [t for _, t in pieces]
    assert "".join(p for p, _ in pieces) == text  # shrunk, not dropped
    assert len(pieces) > 31 // 8 + 1  # the guard cut pieces shorter than 8 tokens in context


# --- issue 14 (mutation testing): gaps the mutants showed -----------------------------------


def test_no_tokens_is_no_chunk_and_one_token_is_one() -> None:
    assert chunker(30).split("") == []
    assert chunker(30).split(" \n\t ") == []
    assert chunker(30).split("cat") == [("cat", 1)]
    assert list(chunker(30).chunks([Section("   ", page=1)])) == []


def test_chunks_carry_the_text_and_token_count_of_each_piece() -> None:
    text = "The cat sat on the mat. " * 8
    drafts = list(chunker(20).chunks([Section(text)]))
    assert [(d.text, d.tokens) for d in drafts] == chunker(20).split(text)


def test_overlap_is_capped_at_half_the_size_in_whole_tokens() -> None:
    assert chunker(31, overlap=100).overlap == 15
    assert chunker(30, overlap=12).overlap == 12
    pieces = chunker(31, overlap=100).split(" ".join(["cat"] * 100))
    assert [n for _, n in pieces] == [31, 31, 31, 31, 31, 20]  # starts every 16 tokens


def test_the_last_chunk_is_not_cut_when_the_rest_fits() -> None:
    assert [n for _, n in chunker(30).split(" ".join(["cat"] * 90))] == [30, 30, 30]


def test_a_short_word_before_a_word_longer_than_a_chunk() -> None:
    pieces = chunker(30).split("cat " + "x" * 90)
    assert pieces == [("cat", 1)] + [("x" * 30, 30)] * 3


def test_a_paragraph_break_past_half_the_chunk_is_the_cut() -> None:
    first = "The cat sat on the mat. The cat sat on the mat. Dogs bark at night."  # 19 tokens
    second = "The cat sat on the mat. " * 3  # sentence breaks at 26 and 33
    assert chunker(30).split(first + "\n\n" + second) == [(first, 19), (second.strip(), 21)]


def test_a_paragraph_break_before_half_the_chunk_gives_way_to_a_later_sentence() -> None:
    first = "The cat sat on the mat. Dogs bark at night."  # 12 tokens
    second = "The cat sat on the mat. The cat sat on the mat. The cat sat on the mat."
    pieces = chunker(30).split(first + "\n\n" + second)
    assert [n for _, n in pieces] == [26, 7]
    assert pieces[0][0] == first + "\n\nThe cat sat on the mat. The cat sat on the mat."


def test_a_sentence_break_within_the_first_quarter_gives_way_to_a_word() -> None:
    text = "The cat sat on the mat. " + " ".join(["cat"] * 40)  # a sentence break at 7 of 30
    assert [n for _, n in chunker(30).split(text)] == [30, 17]


def test_a_one_token_overlap_without_a_word_boundary_starts_mid_word() -> None:
    text = " ".join(f"w{i}" for i in range(10, 40))  # three tokens a word: w ##1 ##0
    first, second, *_ = chunker(30, overlap=1).split(text)
    assert first == ("w10 w11 w12 w13 w14 w15 w16 w17 w18 w19", 30)
    assert second[0].startswith("9 w20 w21")  # the last token of w19, out of context


def test_chunks_shorter_than_the_overlap_still_move_on() -> None:
    text = "The cat sat on the mat at night. " + " ".join(["dogs"] * 40)
    pieces = chunker(30, overlap=20).split(text)
    assert len(pieces) < 8
    assert words(pieces[-1][0])[-1] == "dogs"
    assert pieces[-1][0].endswith("dogs dogs")


def test_a_short_chunk_repeats_at_most_half_of_itself() -> None:
    """A chunk cut early at a sentence is shorter than the overlap; repeating
    all of it would start the next chunk one word later (near-duplicates)."""
    text = "The cat sat on the mat at night. " + " ".join(["dogs"] * 40)
    pieces = chunker(30, overlap=20).split(text)
    first, second = words(pieces[0][0]), words(pieces[1][0])
    assert first == ["The", "cat", "sat", "on", "the", "mat", "at", "night"]
    shared = next(n for n in range(len(first), -1, -1) if first[len(first) - n :] == second[:n])
    assert shared <= len(first) // 2
    assert sum("night" in words(p) for p, _ in pieces) == 2  # the sentence, and its overlap


def test_the_re_tokenising_guard_shrinks_by_the_overshoot_only() -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordPiece
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"[UNK]": 0, "x": 1, "##xxxx": 2, "##x": 3}
    tokenizer = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=10_000))
    tokenizer.pre_tokenizer = Whitespace()
    pieces = Chunker(tokenizer, 8, 8, 0).split("x" * (1 + 4 * 30))
    assert [n for _, n in pieces] == [8, 8, 8, 8, 8, 6]  # full pieces, not needlessly short


def test_a_token_that_grows_to_a_whole_chunk_out_of_context_is_a_chunk_alone() -> None:
    """Out of context the continuation "##xxxxxxxx" costs "x" + 7 x "##x": 8 tokens,
    a whole chunk. The guard must shrink such pieces to that one token, not loop."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordPiece
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"[UNK]": 0, "x": 1, "##x": 2, "##xxxxxxxx": 3}
    tokenizer = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=10_000))
    tokenizer.pre_tokenizer = Whitespace()
    text = "x" * (1 + 8 * 12)
    pieces = Chunker(tokenizer, 8, 8, 0).split(text)
    assert "".join(p for p, _ in pieces) == text
    assert [n for _, n in pieces] == [8] * 6

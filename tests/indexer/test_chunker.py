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

"""router/semantic_guard.py: each check on the near-misses it exists for, the
paraphrases it must let through, and its symmetry and reflexivity as properties."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.semantic_guard import compatible, conflict

# One sentence each side, the check expected to tell them apart.
NEAR_MISSES = [
    ("What is 15% of 80?", "What is 15% of 90?", "numbers"),
    ("List 3 ideas for a birthday party.", "List 10 ideas for a birthday party.", "numbers"),
    ("Who won the Super Bowl in 2023?", "Who won the Super Bowl in 2024?", "numbers"),
    ("Who was the first president?", "Who was the second president?", "numbers"),
    ("When did World War I end?", "When did World War II end?", "numbers"),
    ("Solve for x: 2x + 3 = 11.", "Solve for x: 2x - 3 = 11.", "operators"),
    ("What does a == b do in JS?", "What does a != b do in JS?", "operators"),
    ("Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?", "negation"),
    ("Can I eat raw cookie dough?", "Why can't I eat raw cookie dough?", "negation"),
    ("Give me a cookie recipe.", "Give me a gluten-free cookie recipe.", "negation"),
    ("Is it safe to eat raw eggs?", "Why is it unsafe to eat raw eggs?", "opposites"),
    ("Is it legal to drive barefoot?", "Is it illegal to drive barefoot?", "opposites"),
    ("How do I increase the font size?", "How do I decrease the font size?", "opposites"),
    ("Find the minimum value in a list.", "Find the maximum value in a list.", "opposites"),
    ("Sort the array in ascending order.", "Sort the array in descending order.", "opposites"),
    ("Convert 10 inches to centimeters.", "Convert 10 feet to centimeters.", "units"),
    ("How many seconds are in a day?", "How many seconds are in a week?", "units"),
    ("How do I reverse a list in Python?", "How do I reverse a list in JavaScript?", "names"),
    ("What is the capital of France?", "What is the capital of Italy?", "names"),
    ("How do I use useEffect?", "How do I use useState?", "names"),
    ("Translate 'good morning' into Spanish.", "Translate 'good morning' into Italian.", "names"),
    ("Transfer $200 from checking to savings.", "Transfer $200 from savings to checking.", "order"),
    ("How many ounces are in a pound?", "How many pounds are in an ounce?", "order"),
    ("Convert Celsius to Fahrenheit.", "Convert Fahrenheit to Celsius.", "direction"),
    ("Translate from English to German.", "Translate from German to English.", "direction"),
    ('Translate "thank you" into Spanish.', 'Translate "excuse me" into Spanish.', "quotes"),
]

PARAPHRASES = [
    ("How much is 1,000 divided by 8?", "What is 1000 / 8?"),
    ("Give me three ideas for a blog post.", "Give me 3 blog post ideas."),
    ("Who wrote Pride and Prejudice?", "Pride and Prejudice was written by whom?"),
    ("What year did World War II end?", "When did the Second World War end?"),
    ("What caused World War I?", "What were the causes of the First World War?"),
    ("I can't log in to my account.", "I'm unable to sign in to my account."),
    ("Give me a workout without equipment.", "Suggest a no-equipment workout."),
    ("How do I unclog a drain without chemicals?", "What's a chemical-free way to unclog a drain?"),
    ("WHAT IS THE CAPITAL OF GERMANY", "what is the capital of germany?"),
    ("What is the capital of Australia?", "Which city is Australia's capital?"),
    ("Convert 5 kilometers to miles.", "How many miles is 5 km?"),
    ("Convert 100 degrees Celsius to Fahrenheit.", "What is 100 °C in Fahrenheit?"),
    ("What is the derivative of x^2?", "Differentiate x squared."),
    ("how do i reverse a list in python", "What's the way to reverse a Python list?"),
    ('Translate "thank you" into German.', 'How do you say "thank you" in German?'),
    ("What's 1,500 plus 2,500?", "1500 + 2500 = ?"),
    ("Is it better to invest or to pay off debt?", "Should I pay off debt or invest?"),
]


@pytest.mark.parametrize(("a", "b", "check"), NEAR_MISSES)
def test_each_check_rejects_its_near_misses(a: str, b: str, check: str) -> None:
    assert conflict(a, b) == check
    assert not compatible(a, b)
    assert not compatible(b, a)


@pytest.mark.parametrize(("a", "b"), PARAPHRASES)
def test_paraphrases_stay_compatible(a: str, b: str) -> None:
    assert conflict(a, b) is None
    assert compatible(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Boil an egg for a soft yolk.", "Boil an egg for a hard yolk."),
        ("How do I read a CSV file with pandas?", "How do I write a CSV file with pandas?"),
        ("Write a short poem about the ocean.", "Write a brief poem about the ocean."),
    ],
)
def test_strict_rejects_one_word_substitutions(a: str, b: str) -> None:
    assert compatible(a, b)
    assert conflict(a, b, strict=True) == "substitution"
    assert conflict(b, a, strict=True) == "substitution"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("i cant login to my acount", "i cant login to my account"),  # a typo
        ("Summarize this email.", "Please summarize this email for me."),  # function words
        ("Write a short poem about the sea.", "Write a brief poem about the ocean."),  # two spans
    ],
)
def test_strict_keeps_typos_and_function_words(a: str, b: str) -> None:
    assert compatible(a, b, strict=True)


def test_thousands_separators_and_leading_zeros_are_one_number() -> None:
    assert compatible("Send 1,000,000 rows", "Send 1000000 rows")
    assert compatible("Agent 007 files", "Agent 7 files")
    assert not compatible("Python 3.10 features", "Python 3.1 features")
    assert not compatible("5 and 5 apples", "5 apples")  # a multiset, not a set


def test_a_name_added_on_one_side_only_is_compatible() -> None:
    # Only a swap (a name on each side the other lacks) is a conflict.
    assert compatible("Who won the 2018 World Cup?", "Who won the 2018 FIFA World Cup?")


def test_cheap_for_short_prompts() -> None:
    pairs = [(a, b) for a, b, _ in NEAR_MISSES] + PARAPHRASES
    # Every text fresh, as the cache sees a new prompt: no feature-cache hits.
    start = time.perf_counter()
    for i in range(20):
        for a, b in pairs:
            compatible(f"{a} #{i}", f"{b} #{i}", strict=True)
    per_call = (time.perf_counter() - start) / (20 * len(pairs))
    assert per_call < 2e-3, f"{per_call * 1e6:.0f} µs per call"


texts = st.text(max_size=200) | st.lists(
    st.sampled_from(
        "how do I not never convert Celsius to Fahrenheit Python python 15% of 80 90 "
        "'quoted' \"good morning\" unsafe safe increase decrease from into == != "
        "- + 2x 1,000 1000 three 3 II second km miles . ? , n't can't useState".split()
    ),
    max_size=25,
).map(" ".join)


@given(texts)
@settings(max_examples=300, deadline=None)
def test_any_text_is_compatible_with_itself(a: str) -> None:
    assert compatible(a, a)
    assert compatible(a, a, strict=True)
    assert compatible(a, str(a))  # an equal text, not the same object


@given(texts, texts)
@settings(max_examples=500, deadline=None)
def test_symmetric(a: str, b: str) -> None:
    assert conflict(a, b) == conflict(b, a)
    assert conflict(a, b, strict=True) == conflict(b, a, strict=True)

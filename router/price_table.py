"""The shipped price table: USD per million tokens for common OpenAI and
Anthropic models, list prices as of about `AS_OF`. They were written down
without access to the vendors' pages (this project's machines reach package
registries only) and are not verified: check them against the vendors' pages
before relying on a figure. Prices change: an admin's `SetPrice`, the
config's `prices:` section and a deployment's own `price:` all override this
table (router/pricing.py).

A key matches the upstream model name exactly, or as a prefix ending where a
`-` starts (so "claude-3-5-sonnet" prices "claude-3-5-sonnet-20241022"); the
longest matching key wins. Columns: input, cached input, output; embeddings:
input only.
"""

from __future__ import annotations

AS_OF = "2025-12-01"
VENDORS = frozenset({"openai", "anthropic"})  # providers the table applies to

# model: (input, cached_input, output), USD per million tokens
CHAT: dict[str, tuple[float, float, float]] = {
    # OpenAI
    "gpt-5": (1.25, 0.125, 10.0),
    "gpt-5-mini": (0.25, 0.025, 2.0),
    "gpt-5-nano": (0.05, 0.005, 0.40),
    "gpt-4.1": (2.0, 0.50, 8.0),
    "gpt-4.1-mini": (0.40, 0.10, 1.60),
    "gpt-4.1-nano": (0.10, 0.025, 0.40),
    "gpt-4o": (2.50, 1.25, 10.0),
    "gpt-4o-mini": (0.15, 0.075, 0.60),
    "gpt-4-turbo": (10.0, 10.0, 30.0),
    "gpt-3.5-turbo": (0.50, 0.50, 1.50),
    "o1": (15.0, 7.50, 60.0),
    "o1-mini": (1.10, 0.55, 4.40),
    "o3": (2.0, 0.50, 8.0),
    "o3-mini": (1.10, 0.55, 4.40),
    "o4-mini": (1.10, 0.275, 4.40),
    # Anthropic (cached input: cache reads)
    "claude-opus-4-5": (5.0, 0.50, 25.0),
    "claude-opus-4-1": (15.0, 1.50, 75.0),
    "claude-opus-4": (15.0, 1.50, 75.0),
    "claude-sonnet-4-5": (3.0, 0.30, 15.0),
    "claude-sonnet-4": (3.0, 0.30, 15.0),
    "claude-haiku-4-5": (1.0, 0.10, 5.0),
    "claude-3-7-sonnet": (3.0, 0.30, 15.0),
    "claude-3-5-sonnet": (3.0, 0.30, 15.0),
    "claude-3-5-haiku": (0.80, 0.08, 4.0),
    "claude-3-opus": (15.0, 1.50, 75.0),
    "claude-3-haiku": (0.25, 0.03, 1.25),
}

# model: USD per million input tokens
EMBEDDING: dict[str, float] = {
    "text-embedding-3-small": 0.02,
    "text-embedding-3-large": 0.13,
    "text-embedding-ada-002": 0.10,
}

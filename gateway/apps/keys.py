"""API key secrets: how they are made, presented and stored.

A secret is `igk_<id>_<32 random bytes, base64url>`. It is stored only as
HMAC-SHA256(domain key, secret). A slow password hash (bcrypt, argon2) exists
to make guessing low-entropy passwords expensive; these secrets carry 256 bits
of randomness, so guessing is hopeless either way, and a fast keyed hash lets
a key be resolved with one hash and one indexed lookup (the gateway then
caches the result briefly, see gateway/apps/access.py). The id part
makes a leaked secret traceable to its record without exposing the hash.
"""

from __future__ import annotations

import base64
import hmac
import secrets

_PREFIX = "igk_"
# Domain separation: these hashes are only ever comparable with each other.
_HASH_KEY = b"infergate api key v1"


def new_secret() -> tuple[str, str]:
    """(key id, secret). The secret is shown once and never stored."""
    key_id = secrets.token_hex(8)
    body = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return key_id, f"{_PREFIX}{key_id}_{body}"


def hash_secret(secret: str) -> str:
    return hmac.digest(_HASH_KEY, secret.encode(), "sha256").hex()


def display_prefix(secret: str) -> str:
    """What lists show: enough to recognise a key, nothing to use it."""
    return secret[: len(_PREFIX) + 16 + 5]


def bearer(metadata: object) -> str | None:
    """The secret from `authorization: Bearer …` in gRPC metadata, if any."""
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None

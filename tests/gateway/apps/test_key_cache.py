"""The authenticator's key cache: hits never wait on the store, a key in use
is refreshed in the background, revocation still takes effect within the TTL."""

from __future__ import annotations

import asyncio

from gateway.apps import keys
from gateway.apps.access import Authenticator
from gateway.apps.model import ApiKey, Credential, Tenant
from gateway.identity import Role

SECRET = "igk_test_secret"
CREDENTIAL = Credential(ApiKey("k1", "tenants/acme", Role.USER, "igk_test"), Tenant("acme"))


class Store:
    """Answers lookups from `live`; `gate` (when set) holds each lookup open."""

    def __init__(self) -> None:
        self.live: Credential | None = CREDENTIAL
        self.lookups = 0
        self.gate: asyncio.Event | None = None

    async def credential(self, secret_hash: str) -> Credential | None:
        assert secret_hash == keys.hash_secret(SECRET)  # only the hash reaches the store
        self.lookups += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.live


async def test_a_key_in_use_is_refreshed_in_the_background_and_revocation_still_lands() -> None:
    store, now = Store(), [100.0]
    auth = Authenticator(store, ttl_s=5, clock=lambda: now[0])
    first = await auth.grant(SECRET)
    assert first is not None and first.principal.key_id == "k1" and store.lookups == 1
    now[0] += 2  # under half the TTL: a plain hit
    assert await auth.grant(SECRET) is first and store.lookups == 1

    now[0] += 1  # past half: served from the cache while the store is asked again
    store.gate, store.live = asyncio.Event(), None  # meanwhile the key is revoked
    assert await auth.grant(SECRET) is first  # did not wait for the store
    await asyncio.sleep(0)  # the refresh starts, and waits on the store
    assert await auth.grant(SECRET) is first and store.lookups == 2  # one refresh at a time
    store.gate.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert await auth.grant(SECRET) is None  # the refresh saw the revocation
    assert store.lookups == 2


async def test_an_idle_key_past_its_ttl_is_looked_up_on_its_next_call() -> None:
    store, now = Store(), [0.0]
    auth = Authenticator(store, ttl_s=5, clock=lambda: now[0])
    await auth.grant(SECRET)
    now[0] += 6
    store.live = None
    assert await auth.grant(SECRET) is None and store.lookups == 2


async def test_a_failing_refresh_keeps_serving_until_expiry() -> None:
    class Down(Store):
        async def credential(self, secret_hash: str) -> Credential | None:
            self.lookups += 1
            if self.lookups > 1:
                raise ConnectionError("the store is down")
            return self.live

    store, now = Down(), [0.0]
    auth = Authenticator(store, ttl_s=4, clock=lambda: now[0])
    granted = await auth.grant(SECRET)
    now[0] += 3
    assert await auth.grant(SECRET) is granted
    await asyncio.sleep(0)
    assert store.lookups == 2
    assert await auth.grant(SECRET) is granted  # still within the TTL

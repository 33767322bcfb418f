"""Hostile JSON at every route family: deep, wide, huge numbers, NaN and
Infinity, lone surrogates, not JSON at all. Each answer is a 4xx in the
surface's own error shape, never a 5xx."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.rest.transcode import MAX_JSON_DEPTH, BadRequest, parse_json

MESSAGES = [{"role": "user", "content": "hi"}]
# Route -> a valid body, into which the hostile value goes as an extra field
# and as the value of a real one.
ROUTES: dict[str, dict[str, Any]] = {
    "/v1/generate": {"model": "chat", "messages": MESSAGES},
    "/v1/generate:stream": {"model": "chat", "messages": MESSAGES},
    "/v1/chat/completions": {"model": "chat", "messages": MESSAGES},
    "/v1/messages": {"model": "chat", "max_tokens": 8, "messages": MESSAGES},
    "/v1/embeddings": {"model": "embed", "input": "hi"},
    "/v1/collections": {"display_name": "x"},
    "/v1/tasks": {"type": "noop", "payload": {}},
}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE_TEXT = st.one_of(
    st.integers(1, 20_000).map(nested),
    st.integers(1, 5_000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.integers(4_000, 100_000).map(lambda n: "1" * n),  # past int()'s digit limit
    st.integers(300, 4_299).map(lambda n: "9" * n),  # past what a float holds
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999999", "-0", "1e-999999"]),
    st.sampled_from(['"\\ud800"', '"\\udfff x"', '"a\\u0000b"', '"\\x"', "[1,]", "{", ""]),
    st.integers(1, 50_000).map(lambda n: "[" + ",".join(["0"] * n) + "]"),  # wide
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


def bodies(route: str) -> st.SearchStrategy[bytes]:
    valid = ROUTES[route]

    def spliced(value: str, field: str) -> bytes:
        head = json.dumps(valid)[:-1]
        return f'{head}, "{field}": {value}}}'.encode("utf-8", "surrogatepass")

    fields = st.sampled_from(["metadata", *valid])
    return st.one_of(
        st.builds(spliced, HOSTILE_TEXT, fields),
        HOSTILE_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
        JSON_VALUES.map(lambda v: json.dumps(v).encode()),
        st.builds(lambda v, f: spliced(json.dumps(v), f), JSON_VALUES, fields),
    )


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_hostile_json_is_a_4xx_never_a_5xx(route: str, base_url: str) -> None:
    @settings(
        max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(body=bodies(route))
    def check(body: bytes) -> None:
        reply = requests.post(
            f"{base_url}{route}", data=body, headers={"content-type": "application/json"},
            timeout=10,
        )  # fmt: skip
        assert reply.status_code < 500, (reply.status_code, reply.text[:300], body[:120])

    check()


@pytest.mark.parametrize(
    ("route", "shape"),
    [
        ("/v1/generate", "code"),
        ("/v1/chat/completions", "error"),
        ("/v1/messages", "error"),
    ],
)
def test_nesting_past_the_limit_is_a_400_naming_it(route: str, shape: str, base_url: str) -> None:
    for depth in (MAX_JSON_DEPTH + 1, 1_000, 100_000):
        body = {**ROUTES[route], "metadata": "@"}
        raw = json.dumps(body).replace('"@"', nested(depth))
        reply = requests.post(
            f"{base_url}{route}", data=raw, headers={"content-type": "application/json"},
            timeout=10,
        )  # fmt: skip
        assert reply.status_code == 400, (depth, reply.status_code, reply.text[:200])
        answer = reply.json()
        assert shape in answer
        assert f"nested deeper than {MAX_JSON_DEPTH}" in json.dumps(answer)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32"])
def test_a_lone_surrogate_is_refused_in_any_json_encoding(encoding: str, base_url: str) -> None:
    raw = '{"model": "chat", "messages": [{"role": "user", "content": "\\ud800"}]}'
    reply = requests.post(
        f"{base_url}/v1/generate", data=raw.encode(encoding),
        headers={"content-type": "application/json"}, timeout=10,
    )  # fmt: skip
    assert (reply.status_code, "lone surrogate" in reply.text) == (400, True), reply.text


def test_parse_json_keeps_what_it_may_and_refuses_the_rest() -> None:
    ok = {"a": [1, 2.5, -0.0, "é", "\U0001f600", {"b": None}], "deep": nested(MAX_JSON_DEPTH - 1)}
    raw = json.dumps(ok).replace('"' + nested(MAX_JSON_DEPTH - 1) + '"', nested(MAX_JSON_DEPTH - 1))
    assert parse_json(raw.encode())["a"] == ok["a"]
    assert parse_json(b'"\\ud83d\\ude00"') == "\U0001f600"  # a pair is one character
    for bad, why in [
        (nested(MAX_JSON_DEPTH + 1), "nested deeper than"),
        ("[NaN]", "NaN is not a finite number"),
        ("[1e400]", "1e400 is not a finite number"),
        ("1" * 5000, "digits"),
        ("9" * 400, "an integer of 400 digits is out of range"),
        ('["\\udc00"]', "lone surrogate"),
        ("[1,]", "malformed JSON"),
    ]:
        with pytest.raises(BadRequest, match=why):
            parse_json(bad.encode())


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/generate", {"model": "chat", "messages": MESSAGES, "params": {"temperature": 1}}),
        ("/v1/chat/completions", {"model": "chat", "messages": MESSAGES, "max_tokens": 1}),
        ("/v1/messages", {"model": "chat", "messages": MESSAGES, "max_tokens": 1}),
    ],
)
@pytest.mark.parametrize("digits", [20, 40, 310, 4000])
def test_an_integer_too_big_for_its_field_is_a_400(
    route: str, body: dict[str, Any], digits: int, base_url: str
) -> None:
    """Integer fields hold 32 bits, float ones about 1e308; a JSON value
    (a task's payload) holds a double, so 20 digits is fine there."""
    raw = json.dumps(body).replace(": 1}", ": " + "9" * digits + "}")
    reply = requests.post(
        f"{base_url}{route}", data=raw, headers={"content-type": "application/json"}, timeout=10
    )
    assert reply.status_code == 400, (digits, reply.status_code, reply.text[:200])


def test_a_payload_number_past_what_a_double_holds_is_a_400(base_url: str) -> None:
    for digits, status in ((20, 202), (310, 400)):
        raw = '{"type": "noop", "payload": {"n": ' + "9" * digits + "}}"
        reply = requests.post(
            f"{base_url}/v1/tasks", data=raw, headers={"content-type": "application/json"},
            timeout=10,
        )  # fmt: skip
        assert reply.status_code == status, (digits, reply.text[:200])

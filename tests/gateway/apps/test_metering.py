"""What a model-consuming RPC is metered at when its upstream counts no tokens:
a Rerank answered by a local cross-encoder or by an API billing search units
is held to its estimate, so token limits and prices still apply to it."""

from __future__ import annotations

from types import SimpleNamespace

from gateway.apps.access import Grant, _Meter
from gateway.apps.metering import TOKEN_METHODS, estimate_split, observe_response
from gateway.identity import Principal, Role
from gateway.pb import router_pb2

RERANK = "/infergate.v1.Router/Rerank"
GRANT = Grant(Principal("acme", Role.USER), (), ())


def test_a_rerank_without_token_counts_is_metered_at_its_estimate() -> None:
    request = router_pb2.RerankRequest(model="m", query="abcd" * 10, documents=["efgh" * 25] * 4)
    assert RERANK in TOKEN_METHODS
    estimate, output = estimate_split(request, 100)
    assert (estimate, output) == ((40 * 4 + 100 * 4) // 4 + 1, 0)  # query per document + docs
    meter = _Meter(GRANT, RERANK, request)
    meter.input_estimate = estimate
    observe_response(meter.call, router_pb2.RerankResponse(deployment="d", search_units=1))
    meter.price(SimpleNamespace(prices=None))  # type: ignore[arg-type]
    call = meter.call
    assert (call.model, call.input_tokens, call.output_tokens) == ("m", estimate, 0)


def test_a_rerank_with_token_counts_is_metered_at_them() -> None:
    request = router_pb2.RerankRequest(model="m", query="q", documents=["a"])
    meter = _Meter(GRANT, RERANK, request)
    meter.input_estimate = 99
    reply = router_pb2.RerankResponse(deployment="d", usage=router_pb2.Usage(input_tokens=7))
    observe_response(meter.call, reply)
    meter.price(SimpleNamespace(prices=None))  # type: ignore[arg-type]
    assert meter.call.input_tokens == 7


def test_a_failed_rerank_is_not_charged_its_estimate() -> None:
    meter = _Meter(GRANT, RERANK, router_pb2.RerankRequest(model="m", query="q", documents=["a"]))
    meter.input_estimate = 99
    meter.price(SimpleNamespace(prices=None))  # type: ignore[arg-type]
    assert meter.call.input_tokens == 0  # no deployment answered

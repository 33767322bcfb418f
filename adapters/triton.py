"""Triton Inference Server (KServe v2 gRPC) through `tritonclient.grpc.aio`.

Two kinds of model, chosen by the deployment's `task`:

- generate: a decoupled LLM model with the vLLM backend's tensors. The chat is
  rendered into one prompt (`text_input`, BYTES) with `prompt_template`;
  `sampling_parameters` (a JSON string) carries temperature, top_p,
  max_tokens, stop and seed; `ModelStreamInfer` returns `text_output` deltas
  with `finish_reason`, `num_input_tokens` and `num_output_tokens`, the last
  response flagged `triton_final_response`. Unary generate asks for one
  response (`stream: false`) on the same RPC, as decoupled models require.
- embed: an encoder model served by `ModelInfer`: BYTES `text` [N] in,
  FP32 `embedding` [N, D] out (names configurable).
- rerank: a cross-encoder served by `ModelInfer`: BYTES `query` [N] (the
  query, once per document) and `text` [N] (the documents) in, FP32 `score`
  [N] or [N, 1] out, one relevance score per pair (names configurable).

Tools, response_format and images have no tensor in these models: requests
that use them fail with BAD_REQUEST naming the field, rather than silently
losing them. `probe()` asks ServerLive, ModelReady and (once) the model's
metadata, which must declare the input the task needs.

Deployment options:

    url: triton:8001              # required
    task: generate                # or embed, or rerank
    prompt_template: chatml       # or plain ("role: text" lines)
    params: {top_k: 40}           # extra sampling_parameters; request fields win
    input_name: text              # embed, rerank: the BYTES texts input
    output_name: embedding        # embed: the FP32 output
    query_name: query             # rerank: the BYTES query input
    score_name: score             # rerank: the FP32 score output
    timeout_s: 60                 # embed() and probe(), which carry no deadline
    report_usage: true            # ask for finish_reason and token counts; false for
                                  # models without the return_* inputs (older backends)
"""

from __future__ import annotations

import json
import time
from asyncio import CancelledError
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any, Literal

import grpc
import numpy as np
import tritonclient.grpc.aio as triton
from opentelemetry.trace import Span, StatusCode
from pydantic import Field
from tritonclient.utils import InferenceServerException

from adapters._options import parse_options
from router import spans
from router.config import Frozen
from router.errors import ErrorKind, ProviderError
from router.provider import Provider
from router.types import Chunk, Embeddings, Message, Ranking, Request, Response, Usage, ranked

VENDOR = "triton"
_SERVICE = "inference.GRPCInferenceService"  # KServe v2, as tritonclient speaks it
_GRPC_STATUS = "rpc.grpc.status_code"  # as on the gateway's own RPC spans
_KINDS = {
    "INVALID_ARGUMENT": ErrorKind.BAD_REQUEST,
    "FAILED_PRECONDITION": ErrorKind.BAD_REQUEST,
    "OUT_OF_RANGE": ErrorKind.BAD_REQUEST,
    "UNAUTHENTICATED": ErrorKind.AUTH,
    "PERMISSION_DENIED": ErrorKind.AUTH,
    "NOT_FOUND": ErrorKind.NOT_FOUND,
    "DEADLINE_EXCEEDED": ErrorKind.TIMEOUT,
    "RESOURCE_EXHAUSTED": ErrorKind.RATE_LIMITED,
    "UNAVAILABLE": ErrorKind.UNAVAILABLE,
    "CANCELLED": ErrorKind.CANCELLED,
}
_FINISH = {"stop": "stop", "length": "length", "abort": "stop"}
_USAGE_INPUTS = ("return_finish_reason", "return_num_input_tokens", "return_num_output_tokens")


class TritonSettings(Frozen):
    url: str = Field(min_length=1)
    task: Literal["generate", "embed", "rerank"] = "generate"
    prompt_template: Literal["chatml", "plain"] = "chatml"
    params: dict[str, Any] = Field(default_factory=dict)
    input_name: str = "text"
    output_name: str = "embedding"
    query_name: str = "query"
    score_name: str = "score"
    timeout_s: float = Field(default=60.0, gt=0)
    report_usage: bool = True


class TritonProvider(Provider):
    """One model on a Triton server; one gRPC channel per deployment."""

    def __init__(self, model: str, options: Mapping[str, Any] | None = None) -> None:
        self.model = model
        self.settings = parse_options(TritonSettings, options, VENDOR)
        self._client = triton.InferenceServerClient(self.settings.url)
        self._metadata_checked = False
        self._stream_span = _span_attributes(self.settings.url, "ModelStreamInfer")
        self._infer_span = _span_attributes(self.settings.url, "ModelInfer")

    def upstream_body(self, request: Request) -> bytes:
        return b""  # gRPC: the request is protobuf, shown as JSON by upstream_request

    def upstream_request(self, request: Request) -> dict[str, Any]:
        """The ModelStreamInferRequest `generate` sends, in KServe v2 JSON form. No I/O."""
        return self._infer_request(request, stream=False)

    def _infer_request(self, request: Request, *, stream: bool) -> dict[str, Any]:
        if self.settings.task != "generate":
            raise ProviderError(
                ErrorKind.BAD_REQUEST,
                f"triton model {self.model!r} serves {self.settings.task} only",
            )
        params = request.params
        for field, used in (
            ("params.tools", bool(params.tools)),
            ("params.response_format", _formatted(params.response_format)),
            ("messages.parts", any(p.image_url for m in request.messages for p in m.parts)),
        ):
            if used:
                raise ProviderError(
                    ErrorKind.BAD_REQUEST, f"{field}: not supported by the triton adapter"
                )
        sampling: dict[str, Any] = dict(self.settings.params)
        for name in ("temperature", "top_p", "max_tokens", "seed"):
            value = getattr(params, name)
            if value is not None:
                sampling[name] = value
        if params.stop:
            sampling["stop"] = list(params.stop)
        inputs = [
            _tensor("text_input", "BYTES", _prompt(request.messages, self.settings)),
            _tensor("stream", "BOOL", stream),
            _tensor("sampling_parameters", "BYTES", json.dumps(sampling, sort_keys=True)),
            _tensor("exclude_input_in_output", "BOOL", True),
        ]
        if self.settings.report_usage:
            inputs += [_tensor(name, "BOOL", True) for name in _USAGE_INPUTS]
        return {"model_name": self.model, "inputs": inputs}

    async def generate(self, request: Request, deadline: float | None) -> Response:
        """One response from the model (`stream: false`); cancellation cancels the RPC."""
        text: list[str] = []
        last = Chunk()
        async for chunk in self._responses(self._infer_request(request, stream=False), deadline):
            text.append(chunk.delta)
            last = chunk
        return Response("".join(text), last.finish_reason, last.usage or Usage())

    def stream(self, request: Request, deadline: float | None) -> AsyncGenerator[Chunk, None]:
        """`text_output` deltas in order; the last chunk carries finish reason
        and token counts. Closing the generator cancels the gRPC call (the
        server sees the cancellation); the deadline is the call's gRPC timeout."""
        return self._responses(self._infer_request(request, stream=True), deadline)

    async def _responses(
        self, body: dict[str, Any], deadline: float | None
    ) -> AsyncGenerator[Chunk, None]:
        timeout = _remaining(deadline)
        inputs = [_infer_input(t) for t in body["inputs"]]
        names = ["text_output"]
        if self.settings.report_usage:
            names += ["finish_reason", "num_input_tokens", "num_output_tokens"]
        outputs = [triton.InferRequestedOutput(name) for name in names]

        async def requests() -> AsyncIterator[dict[str, Any]]:
            yield {"model_name": self.model, "inputs": inputs, "outputs": outputs}

        started = False
        finish = ""
        usage = Usage()
        headers: dict[str, str] = {}  # gRPC metadata: the traceparent when tracing
        span = spans.start_upstream(self._stream_span, headers)
        responses = self._client.stream_infer(
            requests(), stream_timeout=timeout, headers=headers or None
        )
        code = "OK"
        try:
            async for result, error in responses:
                if error is not None:
                    code = _code(error)
                    kind = ErrorKind.INTERRUPTED if started else ErrorKind.UPSTREAM_5XX
                    raise ProviderError(kind, f"triton: {error.message()}")
                started = True
                delta = _text(result, "text_output")
                reason = _text(result, "finish_reason")
                finish = _FINISH.get(reason, reason) if reason else finish
                usage = Usage(
                    max(usage.input_tokens, _count(result, "num_input_tokens")),
                    usage.output_tokens + _count(result, "num_output_tokens"),
                )
                if delta:
                    yield Chunk(delta=delta)
                if result.get_response().parameters["triton_final_response"].bool_param:
                    break
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            raise _rpc_error(code, exc.details() or "", started) from exc
        except InferenceServerException as exc:
            code = _code(exc)
            raise _rpc_error(code, exc.message() or "", started) from exc
        except (GeneratorExit, CancelledError):  # the caller closed or cancelled the stream
            code = "CANCELLED"
            raise
        finally:
            responses.cancel()  # no-op once the call has ended; else the server sees it
            _ended(span, code)
        if not started:
            raise ProviderError(ErrorKind.UPSTREAM_5XX, "triton: the model sent no response")
        yield Chunk(finish_reason=finish or "stop", usage=usage)

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        """One ModelInfer call for all texts, within `timeout_s`."""
        if self.settings.task != "embed":
            raise ProviderError(
                ErrorKind.BAD_REQUEST, f"triton model {self.model!r} is not an embedding model"
            )
        vectors = await self._infer([(self.settings.input_name, texts)], self.settings.output_name)
        if vectors is None or vectors.shape[0] != len(texts):
            raise ProviderError(ErrorKind.UPSTREAM_5XX, "triton: embedding count mismatch")
        return Embeddings(vectors.astype(np.float64).tolist(), Usage())

    async def rerank(
        self, query: str, documents: Sequence[str], top_n: int, deadline: float | None
    ) -> Ranking:
        """One ModelInfer call scoring every (query, document) pair, within
        `timeout_s`: the query repeated in `query_name`, the documents in
        `input_name`, one FP32 score each out of `score_name`."""
        if self.settings.task != "rerank":
            raise ProviderError(
                ErrorKind.UNIMPLEMENTED, f"triton model {self.model!r} is not a reranker model"
            )
        pairs = [(self.settings.query_name, [query] * len(documents)),
                 (self.settings.input_name, documents)]  # fmt: skip
        scores = await self._infer(pairs, self.settings.score_name)
        if scores is None or scores.size != len(documents):
            raise ProviderError(ErrorKind.UPSTREAM_5XX, "triton: one score per document expected")
        return Ranking(ranked(scores.reshape(-1).tolist(), top_n), Usage())

    async def _infer(self, inputs: Sequence[tuple[str, Sequence[str]]], output: str) -> Any:
        """One ModelInfer call with BYTES [N] inputs; the output's array (or None)."""
        tensors = []
        for name, texts in inputs:
            tensor = triton.InferInput(name, [len(texts)], "BYTES")
            tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
            tensors.append(tensor)
        headers: dict[str, str] = {}
        span = spans.start_upstream(self._infer_span, headers)
        code = "OK"
        try:
            result = await self._client.infer(
                self.model,
                tensors,
                outputs=[triton.InferRequestedOutput(output)],
                client_timeout=self.settings.timeout_s,
                headers=headers or None,
            )
        except InferenceServerException as exc:
            code = _code(exc)
            raise _rpc_error(code, exc.message() or "", False) from exc
        except CancelledError:
            code = "CANCELLED"
            raise
        finally:
            _ended(span, code)
        return result.as_numpy(output)

    async def probe(self) -> None:
        """ServerLive, then ModelReady, then (first time) the model's metadata."""
        limit = self.settings.timeout_s
        try:
            if not await self._client.is_server_live(client_timeout=limit):
                raise ProviderError(ErrorKind.UNAVAILABLE, "triton: server is not live")
            if not await self._client.is_model_ready(self.model, client_timeout=limit):
                raise ProviderError(ErrorKind.UNAVAILABLE, f"triton: {self.model!r} is not ready")
            if not self._metadata_checked:
                metadata = await self._client.get_model_metadata(self.model, client_timeout=limit)
                generates = self.settings.task == "generate"
                needed = "text_input" if generates else self.settings.input_name
                names = {i.name for i in metadata.inputs}
                if needed not in names:
                    raise ProviderError(
                        ErrorKind.BAD_REQUEST,
                        f"triton: {self.model!r} has no input {needed!r} (has {sorted(names)})",
                    )
                self._metadata_checked = True
        except InferenceServerException as exc:
            raise _rpc_error(_code(exc), exc.message() or "", False) from exc

    async def aclose(self) -> None:
        await self._client.close()


def _span_attributes(url: str, method: str) -> spans.Attributes:
    """The upstream span's: gRPC names the call by service and method, not by URL."""
    return {
        "rpc.system": "grpc", "rpc.service": _SERVICE, "rpc.method": method,
        "server.address": url,
    }  # fmt: skip


def _ended(span: Span, code: str) -> None:
    """End the upstream span with the call's gRPC status (by name; "" is UNKNOWN)."""
    if not span.is_recording():  # tracing off, or a trace the sampler dropped
        return
    status = grpc.StatusCode.__members__.get(code, grpc.StatusCode.UNKNOWN)
    span.set_attribute(_GRPC_STATUS, status.value[0])
    if status is not grpc.StatusCode.OK:
        span.set_status(StatusCode.ERROR, status.name)
    span.end()


def _formatted(fmt: Any) -> bool:
    return fmt is not None and fmt.type != "text"


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise ProviderError(ErrorKind.TIMEOUT, "triton: the deadline passed before the call")
    return left


def _code(exc: InferenceServerException) -> str:
    """ "StatusCode.UNAVAILABLE" -> "UNAVAILABLE"."""
    return str(exc.status() or "").rpartition(".")[2]


def _rpc_error(code: str, details: str, started: bool) -> ProviderError:
    kind = _KINDS.get(code, ErrorKind.UPSTREAM_5XX)
    if started and kind in (ErrorKind.UNAVAILABLE, ErrorKind.UPSTREAM_5XX):
        kind = ErrorKind.INTERRUPTED  # the stream had begun: it broke
    return ProviderError(kind, f"triton: {code or 'error'}: {details}")


def _prompt(messages: Sequence[Message], settings: TritonSettings) -> str:
    if settings.prompt_template == "plain":
        return "".join(f"{m.role}: {m.text()}\n" for m in messages) + "assistant:"
    turns = "".join(f"<|im_start|>{m.role}\n{m.text()}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"


def _tensor(name: str, datatype: str, value: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": [1], "data": [value]}


def _infer_input(tensor: dict[str, Any]) -> Any:
    infer_input = triton.InferInput(tensor["name"], tensor["shape"], tensor["datatype"])
    if tensor["datatype"] == "BYTES":
        data = np.array([v.encode() for v in tensor["data"]], dtype=np.object_)
    else:
        data = np.array(tensor["data"], dtype=bool)
    infer_input.set_data_from_numpy(data)
    return infer_input


def _text(result: Any, name: str) -> str:
    array = result.as_numpy(name)
    if array is None or array.size == 0:
        return ""
    value = array.reshape(-1)[0]
    return value.decode() if isinstance(value, bytes) else str(value)


def _count(result: Any, name: str) -> int:
    array = result.as_numpy(name)
    return int(array.reshape(-1)[0]) if array is not None and array.size else 0

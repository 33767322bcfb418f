"""A fake Triton Inference Server: the KServe v2 gRPC service from
tritonclient's own definitions (service_pb2_grpc), serving a decoupled LLM
model with the vLLM backend's tensors (ModelStreamInfer) and an encoder
model (ModelInfer), plus ServerLive / ModelReady / ModelMetadata."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from tests.fakes.script import Observed, Script, vector

LLM = "llm"
EMBEDDER = "embedder"
CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
         403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
         408: grpc.StatusCode.DEADLINE_EXCEEDED, 429: grpc.StatusCode.RESOURCE_EXHAUSTED,
         500: grpc.StatusCode.INTERNAL, 503: grpc.StatusCode.UNAVAILABLE}  # fmt: skip
_INPUTS = {
    LLM: [("text_input", "BYTES"), ("stream", "BOOL"), ("sampling_parameters", "BYTES"),
          ("exclude_input_in_output", "BOOL"), ("return_finish_reason", "BOOL"),
          ("return_num_input_tokens", "BOOL"), ("return_num_output_tokens", "BOOL")],
    EMBEDDER: [("text", "BYTES")],
}  # fmt: skip


def decode(request: pb.ModelInferRequest) -> dict[str, Any]:
    """A request in the KServe v2 JSON form the adapter's dry run shows."""
    inputs = []
    for tensor, raw in zip(request.inputs, request.raw_input_contents, strict=True):
        if tensor.datatype == "BYTES":
            data: list[Any] = [v.decode() for v in deserialize_bytes_tensor(raw)]
        else:
            data = np.frombuffer(raw, dtype=bool).tolist()
        inputs.append({"name": tensor.name, "datatype": tensor.datatype,
                       "shape": list(tensor.shape), "data": data})  # fmt: skip
    return {"model_name": request.model_name, "inputs": inputs}


def _output(response: pb.ModelInferResponse, name: str, datatype: str, array: Any) -> None:
    response.outputs.append(
        pb.ModelInferResponse.InferOutputTensor(name=name, datatype=datatype, shape=array.shape)
    )
    raw = serialize_byte_tensor(array).item() if datatype == "BYTES" else array.tobytes()
    response.raw_output_contents.append(raw)


def _token_response(
    model: str, text: str, finish: str, inputs: int, outputs: int, final: bool
) -> pb.ModelStreamInferResponse:
    response = pb.ModelInferResponse(model_name=model, id="")
    _output(response, "text_output", "BYTES", np.array([text.encode()], dtype=np.object_))
    if finish:
        _output(response, "finish_reason", "BYTES", np.array([finish.encode()], dtype=np.object_))
    _output(response, "num_input_tokens", "UINT32", np.array([inputs], dtype=np.uint32))
    _output(response, "num_output_tokens", "UINT32", np.array([outputs], dtype=np.uint32))
    response.parameters["triton_final_response"].bool_param = final
    return pb.ModelStreamInferResponse(infer_response=response)


class TritonFake(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.observed = Observed()
        self.live = True
        self.ready = True
        self.server: grpc.aio.Server | None = None
        self.url = ""

    async def start(self) -> TritonFake:
        self.server = grpc.aio.server()
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(self, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.url = f"127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.stop(None)

    async def ServerLive(self, request: Any, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.live)

    async def ServerReady(self, request: Any, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.live and self.ready)

    async def ModelReady(self, request: Any, context: Any) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.ready and request.name in _INPUTS)

    async def ModelMetadata(self, request: Any, context: Any) -> pb.ModelMetadataResponse:
        if request.name not in _INPUTS:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {request.name!r}")
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=request.name,
            versions=["1"],
            platform="python" if request.name == EMBEDDER else "vllm",
            inputs=[tensor(name=n, datatype=d, shape=[-1]) for n, d in _INPUTS[request.name]],
        )

    async def _fail_or_wait(self, context: Any) -> None:
        script = self.script
        if script.delay_s:
            await asyncio.sleep(script.delay_s)
        if script.status != 200:
            code = CODES.get(script.status, grpc.StatusCode.INTERNAL)
            await context.abort(code, f"fake error {script.status}")

    async def ModelInfer(self, request: Any, context: Any) -> pb.ModelInferResponse:
        self.observed.called(
            f"ModelInfer {request.model_name}", _metadata(context), decode(request)
        )
        try:
            await self._fail_or_wait(context)
        except asyncio.CancelledError:
            self.observed.disconnected()
            raise
        texts = [v.decode() for v in deserialize_bytes_tensor(request.raw_input_contents[0])]
        vectors = [vector(t, i, self.script.dimensions) for i, t in enumerate(texts)]
        response = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
        _output(response, "embedding", "FP32", np.array(vectors, dtype=np.float32))
        return response

    async def ModelStreamInfer(self, request_iterator: Any, context: Any) -> Any:
        request = await anext(aiter(request_iterator))
        body = decode(request)
        self.observed.called(f"ModelStreamInfer {request.model_name}", _metadata(context), body)
        script, model = self.script, request.model_name
        streaming = next(t["data"][0] for t in body["inputs"] if t["name"] == "stream")
        finish = {"tool_calls": "stop"}.get(script.finish, script.finish)
        try:
            await self._fail_or_wait(context)
            if not streaming:
                yield _token_response(model, "".join(script.tokens), finish,
                                      script.input_tokens, len(script.tokens), True)  # fmt: skip
                return
            for i, token in enumerate(script.tokens):
                if i == script.cut_after:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset by peer")
                if i and script.token_delay_s:
                    await asyncio.sleep(script.token_delay_s)
                last = i == len(script.tokens) - 1
                yield _token_response(model, token, finish if last else "",
                                      script.input_tokens, 1, last)  # fmt: skip
        except asyncio.CancelledError:
            self.observed.disconnected()
            raise


def _metadata(context: Any) -> dict[str, str]:
    """The call's metadata (the client's headers), as the HTTP fakes keep theirs."""
    return {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}


def sampling(body: dict[str, Any]) -> dict[str, Any]:
    """The decoded sampling_parameters of a recorded request."""
    raw = next(t["data"][0] for t in body["inputs"] if t["name"] == "sampling_parameters")
    return dict(json.loads(raw))

"""One module per backend, each implementing router.provider.Provider."""

from __future__ import annotations

from router.config import DeploymentConfig
from router.provider import Provider


def build_provider(deployment: DeploymentConfig) -> Provider:
    """The provider for one deployment of the config; ValueError names what is wrong."""
    if deployment.provider == "mock":
        from adapters.mock import MockProvider

        return MockProvider(deployment.model, deployment.options)
    if deployment.provider == "openai":
        from adapters.openai import OpenAIProvider

        return OpenAIProvider(deployment.model, deployment.options)
    if deployment.provider == "anthropic":
        from adapters.anthropic import AnthropicProvider

        return AnthropicProvider(deployment.model, deployment.options)
    if deployment.provider == "triton":
        from adapters.triton import TritonProvider

        return TritonProvider(deployment.model, deployment.options)
    if deployment.provider == "onnx":
        from adapters.onnx import OnnxProvider

        return OnnxProvider(deployment.model, deployment.options)
    if deployment.provider == "cohere":
        from adapters.rerank_http import RerankHttpProvider

        return RerankHttpProvider(deployment.model, deployment.options)
    raise ValueError(
        f"deployment {deployment.name!r}: provider {deployment.provider!r} is not available "
        "(available: mock, openai, anthropic, triton, onnx, cohere)"
    )

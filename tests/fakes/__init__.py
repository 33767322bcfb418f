"""Wire-level fakes of the upstreams the adapters speak to: local servers that
answer in each vendor's documented JSON / SSE / KServe v2 gRPC shapes, driven
per test by a `Script` and observed through `Observed`."""

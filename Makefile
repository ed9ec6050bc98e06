# The two commands a newcomer needs:  `make run`  and  `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: run test check lint typecheck pytest bench bench-mcp bench-gate clean

# Create the virtual environment and install the locked dependencies (re-run when they change).
$(BIN)/kamiyo: pyproject.toml uv.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || $(BIN)/python -m pip install --quiet --disable-pip-version-check "uv>=0.8,<1"
	$(UV) sync --frozen --inexact --python $(BIN)/python
	touch $@

# Set up, prepare the embedded SQLite store with the bundled dataset, show the largest
# incidents, then serve MCP over HTTP on PORT (Ctrl-C stops it).
PORT ?= 8000
run: $(BIN)/kamiyo
	$(BIN)/kamiyo db upgrade
	$(BIN)/kamiyo search --sort loss --limit 5
	$(BIN)/kamiyo serve --transport http --host 127.0.0.1 --port $(PORT)

# Set up and run every check: lint, types, layering, then the whole test suite.
test: check pytest

check: lint typecheck

lint: $(BIN)/kamiyo
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/kamiyo
	$(BIN)/mypy

# The Node MCP clients the tests drive (Inspector CLI, TypeScript SDKs), from their lock file.
NODE_CLIENTS := tests/node/node_modules/.package-lock.json
$(NODE_CLIENTS): tests/node/package.json tests/node/package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci --prefix tests/node --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the Node MCP client tests will be skipped"; fi

pytest: $(BIN)/kamiyo $(NODE_CLIENTS)
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(BIN)/kamiyo
	$(BIN)/python -m bench.search $(BENCH_ARGS)

bench-mcp: $(BIN)/kamiyo
	npm ci --prefix bench/node --no-audit --no-fund --loglevel=error
	$(BIN)/python -m bench.mcp $(BENCH_ARGS)

bench-gate: $(BIN)/kamiyo
	$(BIN)/python -m bench.gate $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

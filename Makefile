# The two commands a newcomer needs:  `make run`  and  `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: config-reference run test test-fast coverage check lint typecheck pytest browser bench bench-mcp bench-gate clean

# Create the virtual environment and install the locked dependencies (re-run when they change),
# compiled to bytecode: where PYTHONDONTWRITEBYTECODE is set nothing is cached on import, and
# every process the tests start would otherwise compile its imports again (seconds each).
$(BIN)/kamiyo: pyproject.toml uv.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || $(BIN)/python -m pip install --quiet --disable-pip-version-check "uv>=0.8,<1"
	$(UV) sync --frozen --inexact --compile-bytecode --python $(BIN)/python
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

# The tests that run in this process only (no servers, node clients, anvil or x402 client
# started): a quick loop while working, without the set-up of the Node clients.
test-fast: $(BIN)/kamiyo
	@$(BIN)/python -m compileall -q src
	$(BIN)/pytest $(XDIST) -m "not process" $(PYTEST_ARGS)

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

# The browser tests (tests/browser) drive Debian's chromium through Playwright's driver, which
# the playwright wheel ships; nothing runs `playwright install`, so no browser is downloaded.
# Installed with apt where it is missing and we may (root, apt-get); otherwise the browser tests
# skip with the reason (under CI they fail). axe-core comes with the Node clients above.
CHROMIUM := /usr/bin/chromium
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
			|| echo "chromium could not be installed: the browser tests will be skipped"; \
	else echo "$(CHROMIUM) missing (installing needs root and apt-get): the browser tests will be skipped"; fi

# The suite runs on PYTEST_WORKERS processes (pytest-xdist; 0 runs it in this one). More workers
# than the 2 cores of CI pays, as the slow tests mostly wait on the processes they start.
# loadgroup keeps the tests of a module whose fixture starts a server on one worker.
PYTEST_WORKERS ?= 3
XDIST = -n $(PYTEST_WORKERS) --dist loadgroup
# Coverage of kamiyo by the test processes (not by the servers they start): `make coverage`.
# Tracing costs about half again the CPU of the in-process tests, so `make test` (CI, on 2
# cores) runs without it. The floor holds for the whole suite, so it is not applied when
# PYTEST_ARGS picks some tests.
COVERAGE_FLOOR ?= 92
COVERAGE ?=
coverage:
	$(MAKE) pytest COVERAGE="--cov=kamiyo --cov-report=term-missing:skip-covered \
		$(if $(PYTEST_ARGS),,--cov-fail-under=$(COVERAGE_FLOOR))"
# The browser tests run in a pytest process of their own, after the others: Playwright's sync
# API drives an event loop of its own on the test thread, and a worker that had run them hung
# in a later async test's teardown (twice in CI); PYTEST_ARGS runs only what it names.
BROWSER_TESTS := tests/browser
MAIN_TESTS = $(if $(PYTEST_ARGS),$(PYTEST_ARGS),--ignore=$(BROWSER_TESTS))
pytest: $(BIN)/kamiyo $(NODE_CLIENTS) browser
	@$(BIN)/python -m compileall -q src
	@echo "$(BIN)/pytest $(XDIST) $(COVERAGE) --durations=30 $(MAIN_TESTS)"
	@status=0; $(BIN)/pytest $(XDIST) $(COVERAGE) --durations=30 $(MAIN_TESTS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests (exit 5): nothing was tested" >&2; fi; \
	if [ -z "$(PYTEST_ARGS)" ]; then \
		echo "$(BIN)/pytest -n 0 $(BROWSER_TESTS)"; \
		$(BIN)/pytest -n 0 $(BROWSER_TESTS) || status=$$?; \
	fi; \
	exit $$status

bench: $(BIN)/kamiyo
	$(BIN)/python -m bench.search $(BENCH_ARGS)

bench-mcp: $(BIN)/kamiyo
	npm ci --prefix bench/node --no-audit --no-fund --loglevel=error
	$(BIN)/python -m bench.mcp $(BENCH_ARGS)

bench-gate: $(BIN)/kamiyo
	$(BIN)/python -m bench.gate $(BENCH_ARGS)

# docs/configuration.md from the settings object (tests/test_deploy.py fails when it drifts).
config-reference: $(BIN)/kamiyo
	$(BIN)/python -m kamiyo.config.reference

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .coverage .coverage.*

# Two commands for a newcomer: `make serve` starts the service, `make test` runs the whole suite.
# Both create .venv and install the project on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test lint bench check-mappings fixtures clean lock

$(BIN)/cds-service: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

serve: $(BIN)/cds-service
	$(BIN)/cds-service serve --host $(HOST) --port $(PORT)

# The real FHIR test server (Medplum's router on Node); without Node its tests skip, saying why.
tests/fhir_server/node_modules: tests/fhir_server/package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/fhir_server --no-audit --no-fund; \
	else echo "npm not found: the FHIR server tests will be skipped"; fi

test: $(BIN)/cds-service tests/fhir_server/node_modules
	$(BIN)/pytest

lint: $(BIN)/cds-service
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

check-mappings: $(BIN)/cds-service
	$(BIN)/cds-service check-mappings

fixtures:
	$(PYTHON) fixtures/generate.py

bench: $(BIN)/cds-service
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Pin the image's runtime dependencies: resolve them in a fresh venv, write constraints.txt.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet .
	{ sed -n '1,3p' constraints.txt; .lock-venv/bin/pip freeze --exclude breast-surveillance-cds; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .lock-venv

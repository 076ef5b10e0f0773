# `make demo` and `make test` each install everything they need into .venv first.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install system-deps demo lint test test-unit bench clean

PLUGIN := tests/plugins/driftd_testplugin

$(STAMP): pyproject.toml $(PLUGIN)/pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "driftd needs Python 3.11 ($(PYTHON) not found)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	# The test plug-in package (one source, channel and compression strategy through entry points)
	$(BIN)/pip install -q --no-deps -e $(PLUGIN)
	@touch $(STAMP)

install: $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

demo: install
	MLFLOW_DISABLE_TELEMETRY=true $(BIN)/driftd demo --dir .demo

# The gate before any test: lint (ruff), types (mypy) and the import contracts (import-linter).
lint: install
	$(BIN)/ruff check monitor retrain bench tests
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: install system-deps lint
	MLFLOW_DISABLE_TELEMETRY=true $(BIN)/pytest -q -p no:cacheprovider

test-unit: install lint
	MLFLOW_DISABLE_TELEMETRY=true $(BIN)/pytest -q -m "not integration"

bench: install
	$(BIN)/python bench/drift_check.py
	$(BIN)/python bench/compress.py

clean:
	rm -rf $(VENV) .demo build *.egg-info

# Onceonly: the front door. `make run` serves the demo, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ASSETS := node_modules/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-faults lint format install migrate seed bench clean

run: $(STAMP) $(ASSETS)
	@mkdir -p var
	ONCEONLY_DEMO=true $(BIN)/onceonly migrate
	ONCEONLY_DEMO=true $(BIN)/onceonly seed --demo
	ONCEONLY_DEMO=true $(BIN)/onceonly serve --host $(HOST) --port $(PORT)

test: $(STAMP) $(ASSETS) lint
	$(BIN)/pytest -m "not faults"

# Fault tests (tests/faults, 1 to 3 min): a real `onceonly serve` killed, stopped, starved of
# disk, its PostgreSQL stopped and started. CI runs them after `make test`.
test-faults: $(STAMP)
	$(BIN)/pytest -m faults

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Onceonly needs Python 3.11 or newer; set PYTHON=/path/to/python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# Front-end assets from the npm registry (the Ontario Design System styles, axe-core).
# Without npm the pages still work, unstyled, and the browser tests say how to get it.
$(ASSETS): package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --no-audit --no-fund --loglevel=error && touch $(ASSETS); \
	else \
		echo "npm not found: pages will be unstyled; install Node.js with npm to get the Ontario Design System styles"; \
	fi

migrate: $(STAMP)
	$(BIN)/onceonly migrate

seed: $(STAMP)
	$(BIN)/onceonly seed --demo

bench: $(STAMP)
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) var node_modules .pytest_cache .ruff_cache .hypothesis

# The two commands a newcomer needs: `make demo` (the whole system at work) and `make test` (the suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv test lint bench fmt fuzz clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# A hub and five agency nodes over mutual TLS play a month of a province's dispatches (var/demo/, wiped at
# start). DEMO_ARGS=--serve keeps the hub and the web pages up; DEMO_ARGS="--dir DIR --port N" as needed.
demo: $(STAMP)
	$(BIN)/gateway demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/ruff check gateway tests bench
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench

fmt: $(STAMP)
	$(BIN)/ruff format gateway tests bench
	$(BIN)/ruff check --fix gateway tests bench

bench: $(STAMP)
	$(BIN)/python -m bench.run

FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(BIN)/python -m pip install --quiet atheris
	FUZZ_SECONDS=$(FUZZ_SECONDS) PYTHON=$(BIN)/python fuzz/run.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

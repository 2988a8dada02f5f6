# make demo | make test | make bench | make lint — each installs what is missing first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# The install stamp changes whenever the lock or the project metadata changes.
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)

.PHONY: install demo test bench lint format clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "pip==26.3"
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: install
	@bash scripts/demo.sh

test: install
	$(BIN)/python -m pytest

# make bench [SIZE=large]: every benchmark, tables into docs/BENCHMARKS.md, plots into docs/bench/
SIZE ?= small
bench: install
	$(BIN)/python -m benchmarks.suite --size $(SIZE) --record

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf .airflow .recsys-data .pytest_cache

# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint typecheck sam pytest bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e ".[local,dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/sansnuages demo $(DEMO_ARGS)

lint: setup
	$(BIN)/ruff check shared functions tests bench scripts
	$(BIN)/ruff format --check shared functions tests bench scripts

typecheck: setup
	$(BIN)/mypy

sam:
	bash scripts/sam.sh

pytest: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck sam pytest

clean:
	rm -rf .aws-sam .sansnuages demo-output

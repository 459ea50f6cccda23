# `make demo` and `make test` create and fill .venv themselves when it is missing or older than the
# dependency files. torch is installed first, pinned by constraints.txt, so pip never resolves a newer
# (CUDA, multi-GB) build.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[rlds,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/wamdata demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/codec.py

clean:
	rm -rf $(VENV) build .pytest_cache

# vigil: the two commands of the README, and the checks CI runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/vigil: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## Set up and run the main job on the embedded defaults: the server with a demo camera (SQLite, bundled models, no downloads).
demo: $(BIN)/vigil
	$(BIN)/vigil serve --demo

## Set up and run the linters, the type checker and the whole test suite (slow tests included).
test: $(BIN)/vigil lint
	$(BIN)/pytest

lint: $(BIN)/vigil
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

## Benchmarks (not tests): print tables and write JSON under bench/results/.
bench: $(BIN)/vigil
	$(BIN)/pip install --quiet --no-deps face_recognition==1.3.0
	$(BIN)/python bench/core.py
	$(BIN)/python bench/video.py
	$(BIN)/python bench/detect.py
	$(BIN)/python bench/packs.py
	$(BIN)/python bench/compare.py
	$(BIN)/python bench/clustering.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/fleet.py
	$(BIN)/python bench/catalog.py
	nice -n 10 $(BIN)/python bench/search.py

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache

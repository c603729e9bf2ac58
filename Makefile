# nncli: `make demo` sets everything up and fine-tunes the embedded default; `make test` sets up and runs the tests
# (all of them; `make test-fast` skips the end-to-end ones marked slow).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.nncli-installed

.PHONY: setup demo test test-fast lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt scripts/install-torch.sh
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	scripts/install-torch.sh $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[demo,dev,tensorboard,explain,sweep,audit,mlflow]"
	$(BIN)/python -m pip check
	touch $(STAMP)

demo: setup
	$(BIN)/nncli run quickstart

test: setup
	$(BIN)/python -m pytest -q --durations=15

# the edit-run loop: unit and CLI contract tests, no end-to-end training runs (tests marked slow)
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/finetune_bench.py

clean:
	rm -rf $(VENV) runs .pytest_cache

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo scenarios bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/quell demo

scenarios: $(STAMP)
	$(BIN)/quell scenario check emulator/scenarios/*.yaml

# Bytecode first, as a pip install compiles it: the workflow sandbox re-imports the case's module
# for every case, and without a .pyc (PYTHONDONTWRITEBYTECODE) it compiles that source every time.
bench: $(STAMP)
	$(BIN)/python -m compileall -q workflows activities config workers bench
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .quell .pytest_cache

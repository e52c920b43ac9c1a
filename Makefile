# One command for each job; each creates the virtualenv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-data
FEDERATION_DIR ?= demo-federation

.PHONY: setup demo simulate test lint typecheck benchmark clean

setup: $(STAMP)

# torch first, pinned: 2.13.0's CPU wheel lies on this machine; a looser pin would pull a CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/retail-coordinator demo --retailers 5 --rounds 3 --workdir $(FEDERATION_DIR)

# What-if in Flower's simulation engine over files (no processes, no network): 6 retailers.
simulate: $(STAMP)
	$(BIN)/retail-node generate-demo $(DEMO_DIR) --retailers 6 --seed 7
	rm -rf $(FEDERATION_DIR)-simulated
	$(BIN)/retail-coordinator simulate --partitions $(DEMO_DIR) --rounds 5 --epsilon 3 \
	  --workdir $(FEDERATION_DIR)-simulated

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	QT_QPA_PLATFORM=offscreen $(BIN)/pytest -n 2 --dist loadfile

benchmark: $(STAMP)
	$(BIN)/python tests/benchmarks/ingest.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) $(FEDERATION_DIR) $(FEDERATION_DIR)-simulated .mypy_cache .ruff_cache .pytest_cache

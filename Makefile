# Two commands matter: `make demo` and `make test`. Each creates .venv and installs everything first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# CPU hosts get the local CPU build of torch; an unpinned torch would pull several GB of CUDA wheels.
TORCH_PIN := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "torch" || echo "torch==2.13.0")

.PHONY: setup demo test lint proto proto-check bench gpu-check clean

setup: $(STAMP)

# pip's own progress (one line per package, a bar per download) so the first run is never silent.
# What `make demo` needs, in one pip run (one resolve; the venv's own pip is recent enough), with
# no byte-compiling of every installed file (Python compiles what it imports, once); the
# development tools come with the first `make test` / `make lint`.
$(STAMP): pyproject.toml
	@echo "setup: creating $(VENV) and installing prfaas with its runtime dependencies (first run only)"
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --no-compile "$(TORCH_PIN)" -e .
	touch $(STAMP)

# Test and lint tools on top (pytest, ruff, mypy, import-linter, the fuzzers, transformers).
$(DEV_STAMP): $(STAMP)
	@echo "setup: installing the development tools"
	$(BIN)/pip install "$(TORCH_PIN)" -e ".[dev]"
	touch $(DEV_STAMP)

demo: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/prfaas demo

# Static checks first (seconds), then the suite. pytest's own exit status is kept: 5 ("no tests
# collected") fails the build like any other error, so a broken collection cannot pass CI.
test: $(DEV_STAMP) lint
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -ra

# Stubs fresh, ruff lint and format, the package's import contracts (pyproject [tool.importlinter])
# and the type check (pyproject [tool.mypy]).
lint: $(DEV_STAMP)
	$(BIN)/python scripts/gen_proto.py --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

proto: $(DEV_STAMP)
	$(BIN)/python scripts/gen_proto.py

bench: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/prfaas bench model --preset small --json

gpu-check:
	bash scripts/gpu_check.sh

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# Two commands do all the set-up on a fresh machine:
#   make serve   build what is missing and serve predictions (local Triton + gateway)
#   make test    lint, type-check and run the test suite
# Both create .venv on first use. TORCH_SPEC pins the CPU build of torch that installs from local
# disk on the development machines; on a GPU machine set TORCH_SPEC=torch.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= serve,bench,dev
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv serve test lint typecheck pytest clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" -e ".[$(EXTRAS)]"
	touch $(STAMP)

venv: $(STAMP)

serve: $(STAMP)
	$(BIN)/strategist serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy strategist server export benchmarks

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache

# Two entry points (README): `make demo` (set up + main job) and `make test` (set up + tests).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# glibc malloc: keep big tensors mapped between steps (docs/architecture.md "Performance").
export MALLOC_MMAP_THRESHOLD_ := 1000000000
export MALLOC_TRIM_THRESHOLD_ := 1000000000

.PHONY: setup demo test test-all test-explore clean

# constraints.txt: the tested torch/torchvision (pyproject.toml only gives ranges).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-cache-dir -c constraints.txt -e '.[test]'
	touch $@

setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/r2cnn demo --out runs/demo

test: $(VENV)/.installed
	$(VENV)/bin/lint-imports --no-cache
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -q -m "not slow"

test-all: $(VENV)/.installed
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -q

# the property tests with fresh random examples (Hypothesis profile `explore`, tests/conftest.py): run before you
# stop; a case it finds becomes an explicit @example
test-explore: $(VENV)/.installed
	HYPOTHESIS_PROFILE=explore FUZZ_N=1000 $(PY) -m pytest -q -m "hypothesis and not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis

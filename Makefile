# Two set-up commands for a fresh machine (see README.md):
#   make demo   install into .venv and run medlung on the shipped sample films
#   make test   install into .venv (with test extras) and run the whole test suite
# and the everyday ones (CONTRIBUTING.md):
#   make check      ruff check + ruff format --check + mypy + the fast tests (under 3 minutes); CI runs it first
#   make test-fast  the tests not marked slow
#
# torch 2.13.0 is installed before anything that depends on it, so that pip
# does not pull a multi-GB CUDA build for an unpinned torch.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  ?= torch==2.13.0
OUT    ?= out/demo
#: What ruff lints and formats (its settings: pyproject.toml [tool.ruff]); mypy's files are in [tool.mypy].
LINT_PATHS ?= medlung tests scripts benchmarks docs

.PHONY: demo test test-fast check lint typecheck docs venv clean

# pytest, with its exit 5 (no tests collected) mapped to a failure: a run that tests nothing proves nothing
define run_pytest
@rc=0; $(PY) -m pytest $(1) || rc=$$?; \
if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing, a run that tests nothing proves nothing" >&2; exit 1; fi; \
exit $$rc
endef

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet -e ".[test,docs,dev]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/medlung predict $$($(PY) -c "from medlung.samples import sample_paths; print(' '.join(map(str, sample_paths())))") -o $(OUT) --overwrite
	@echo; cut -d, -f1-9 $(OUT)/report.csv

test: venv
	$(call run_pytest,$(PYTEST_ARGS))

# the fast tier: everything not marked slow (a test that needs minutes is marked @pytest.mark.slow)
test-fast: venv
	$(call run_pytest,-m "not slow" $(PYTEST_ARGS))

lint: venv
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

typecheck: venv
	$(VENV)/bin/mypy

check: lint typecheck test-fast

docs: venv
	$(PY) -m mkdocs build --strict -d site

clean:
	rm -rf $(VENV) out

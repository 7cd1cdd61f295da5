# Two set-up commands for a fresh machine (see README.md):
#   make demo   install into .venv and run medlung on the shipped sample films
#   make test   install into .venv (with test extras) and run the whole test suite
#
# torch 2.13.0 is installed before anything that depends on it, so that pip
# does not pull a multi-GB CUDA build for an unpinned torch.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  ?= torch==2.13.0
OUT    ?= out/demo

.PHONY: demo test docs venv clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet -e ".[test,docs]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/medlung predict $$($(PY) -c "from medlung.samples import sample_paths; print(' '.join(map(str, sample_paths())))") -o $(OUT) --overwrite
	@echo; cut -d, -f1-9 $(OUT)/report.csv

test: venv
	@rc=0; $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing, a run that tests nothing proves nothing" >&2; exit 1; fi; \
	exit $$rc

docs: venv
	$(PY) -m mkdocs build --strict -d site

clean:
	rm -rf $(VENV) out

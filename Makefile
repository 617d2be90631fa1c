# Quick start: `make demo` (plan the bundled sample group offline) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# No "Entering directory" lines on stdout when `make test` runs `make plan` (the README test does). A make
# started with -C, or by another Makefile, prints them before reading this file: use `make -s` there.
MAKEFLAGS += --no-print-directory

.PHONY: demo test plan inventory bench-discovery bench-program help clean

# Setup prints to stderr only, so `make plan ... FORMAT=json > FILE` writes JSON alone.
$(VENV)/.installed: requirements.txt
	@echo "setting up $(VENV) from requirements.txt" >&2
	@$(PYTHON) -m venv $(VENV) >&2
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt >&2
	@touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	@echo "installing the test packages from requirements-test.txt" >&2
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt >&2
	@touch $@

demo: $(VENV)/.installed  ## plan the demo stack on the bundled sample group (no accounts needed)
	$(PY) -m fleet plan --stack demo --inventory samples/shop.inventory.json

test: $(VENV)/.installed-test  ## lint and type-check fleet/, then run the whole test suite
	$(VENV)/bin/ruff check fleet/
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

# A value quoted for the shell, whatever quotes or spaces it holds.
quote = '$(subst ','\'',$(1))'

# `make plan STACK=dev [INVENTORY=FILE] [DEPLOYED=FILE] [FORMAT=json]`: the offline plan of a stack.
plan: $(VENV)/.installed  ## plan a stack: make plan STACK=<name> [INVENTORY=file] [DEPLOYED=file] [FORMAT=table|json]
	@test -n "$(STACK)" || { echo "make plan: set STACK, e.g. make plan STACK=demo INVENTORY=samples/shop.inventory.json" >&2; exit 1; }
	@$(PY) -m fleet plan --stack $(call quote,$(STACK)) $(if $(INVENTORY),--inventory $(call quote,$(INVENTORY))) \
	  $(if $(DEPLOYED),--deployed $(call quote,$(DEPLOYED))) $(if $(FORMAT),--format $(call quote,$(FORMAT)))

# `make inventory STACK=dev > FILE`: save the group's listing (needs GITLAB_TOKEN).
inventory: $(VENV)/.installed  ## save a stack's group listing: make inventory STACK=<name> > FILE
	@test -n "$(STACK)" || { echo "make inventory: set STACK, e.g. make inventory STACK=dev > listing.json" >&2; exit 1; }
	@$(PY) -m fleet inventory --stack $(call quote,$(STACK))

# Benchmarks: figures and ratios measured in one run (not timed tests); the last line is for scripts.
bench-discovery: $(VENV)/.installed  ## discovery of 10,000 projects against the GitLab API double (50 ms per request)
	$(PY) bench/discovery.py

bench-program: $(VENV)/.installed-test  ## the Pulumi program under constant-time mocks against a bare program (1k/5k/10k projects)
	$(PY) bench/program.py

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /\1\t/'

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache

# Quick start: `make demo` (plan the bundled sample group offline) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test plan clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@

demo: $(VENV)/.installed  ## plan the demo stack on the bundled sample group (no accounts needed)
	$(PY) -m fleet plan --stack demo --inventory samples/shop.inventory.json

test: $(VENV)/.installed-test  ## lint and type-check fleet/, then run the whole test suite
	$(VENV)/bin/ruff check fleet/
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache

# Two commands do all set-up on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKDIR ?= runs/synthetic
DATA_DIR ?=
DATA_FLAGS := $(if $(DATA_DIR),--config.data.data_dir=$(DATA_DIR))

.PHONY: install test train clean

# Creates the virtualenv if missing and installs the package with its test extras.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The test suite (slow end-to-end tests included; they are few).
test: $(STAMP)
	$(PY) -m pytest -q

# Builds the default synthetic dataset, trains and evaluates (DATA_DIR=, WORKDIR= to move them).
train: $(STAMP)
	$(PY) -m data_builders.build synthetic $(if $(DATA_DIR),--data_dir=$(DATA_DIR))
	$(PY) -m experiments.train --config=synthetic.py --workdir=$(WORKDIR) $(DATA_FLAGS)
	$(PY) -m experiments.evaluate --config=synthetic.py --workdir=$(WORKDIR) $(DATA_FLAGS)

clean:
	rm -rf $(VENV) .pytest_cache

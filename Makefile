# Two commands do all set-up on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKDIR ?= runs/synthetic
DATA_DIR ?=

.PHONY: install test test-all train clean

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

# Builds the default synthetic dataset, trains and evaluates.
train: $(STAMP)
	$(PY) -m data_builders.build synthetic $(if $(DATA_DIR),--data_dir=$(DATA_DIR))
	@if [ ! -f experiments/train.py ]; then \
	  echo "make train: the trainer (experiments/train.py) does not exist yet; the dataset above is built, training is issue 4." >&2; \
	  exit 1; \
	fi
	$(PY) -m experiments.train --config=synthetic.py --workdir=$(WORKDIR)
	$(PY) -m experiments.evaluate --config=synthetic.py --workdir=$(WORKDIR)

clean:
	rm -rf $(VENV) .pytest_cache

# One venv in .venv; `make demo` and `make test` set it up first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
TF_PRIVACY := tensorflow-privacy==0.9.0

.PHONY: setup demo test lint lab bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[lab,dev]"
	# tensorflow-privacy pins versions that clash with flwr; its real needs are in pyproject.toml.
	$(PY) -m pip install --quiet --no-deps $(TF_PRIVACY)
	touch $@

demo: setup
	$(VENV)/bin/fedsim demo --out results/demo

test: setup  # two workers; tests that start Flower's runtimes share one (tests/conftest.py)
	$(PY) -m pytest -n 2 --dist loadgroup

lint: setup
	$(VENV)/bin/ruff check .

lab: setup  # rooted at the repository, so that the notebooks' links (datasheet, README) open
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks/README.md

bench: setup
	$(PY) benchmarks/engine.py

clean:
	rm -rf $(VENV) results .pytest_cache

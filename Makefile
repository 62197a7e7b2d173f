# The commands the README names. Everything a fresh machine needs is installed from here.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
CHECKOV := .venv-checkov/.installed

.PHONY: demo test test-slow lint install postgres tools bench mutation clean

$(STAMP): pyproject.toml setup.py
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP)

## demo: the main job on the embedded SQLite default (no server needed beforehand)
demo: $(STAMP)
	$(PY) scripts/demo.py

## test: the whole suite, against real SQLite and the real PostgreSQL on 127.0.0.1:5432
test: $(STAMP) postgres tools $(CHECKOV) node_modules/.installed
	$(VENV)/bin/pytest -q

## test-slow: the long trials marked slow (SIGKILL loops, lock races, 400-example property tests; left out of `make test`)
test-slow: $(STAMP) postgres tools $(CHECKOV) node_modules/.installed
	$(VENV)/bin/pytest -q -m slow

postgres:
	bash scripts/ensure-postgres.sh

# Command-line tools the tests drive for real (Debian packages; add PACKAGE or PACKAGE:COMMAND here).
DEBS := sqlite3 zstd age
tools:
	bash scripts/ensure-debs.sh $(DEBS)

# Node tools the tests drive for real: Azurite emulates Azure Blob Storage (backup tests).
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# checkov pins old packages (pycep-parser, packaging, boto3...), so it gets its own venv;
# `emrops provision lint` runs it as a subprocess (one to three minutes to install).
$(CHECKOV):
	python3 -m venv .venv-checkov
	.venv-checkov/bin/pip install -q checkov==3.3.30
	touch $(CHECKOV)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy emrops

## mutation: mutmut over the modules that decide (at most 60 min, not in CI; docs/mutation.md). Fails when
## retention, budgets or compare has a surviving mutant not listed as equivalent.
mutation: $(STAMP) postgres tools
	$(PY) scripts/mutation.py $(MUTATION_ARGS)

## bench: the benchmark scripts; they write their figures into docs/benchmarks.md
bench: $(STAMP) postgres
	bash scripts/ensure-debs.sh wrk sqlite3 zstd pgloader
	$(PY) benchmarks/sim_server.py --write
	$(PY) benchmarks/seed.py --write
	$(PY) benchmarks/backup.py
	$(PY) benchmarks/restore_in_place.py --write
	$(PY) benchmarks/migrate.py --messages 200000 --scale  # 1x and 10x (2M messages)
	$(PY) benchmarks/datapath.py --write
	-$(PY) benchmarks/harness.py --write  # exit 3 on a missed target; the figures are written anyway
	$(PY) benchmarks/loadgen.py --write

clean:
	rm -rf $(VENV) .emrops var build *.egg-info .pytest_cache

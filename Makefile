# `make run` and `make test` work on a fresh clone: each sets everything up first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# The PostgreSQL run of the suite; pytest-django creates and drops test_<name> itself.
PG_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres

.PHONY: setup run test test-sqlite test-postgres lint schema chromium

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

run: setup
	$(PY) manage.py migrate
	$(PY) manage.py taskruns_demo
	$(PY) manage.py runserver 127.0.0.1:8000

# The whole suite: SQLite (everything but the PostgreSQL, browser and agent-client tests), then
# PostgreSQL (everything, those included). A test is never skipped for a missing service.
test: setup chromium test-sqlite test-postgres

test-sqlite: setup
	$(PY) -m pytest -m "not postgres and not browser and not agent_client and not faults"

test-postgres: setup
	DATABASE_URL=$(PG_DATABASE_URL) $(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check taskruns config tests bench manage.py
	$(VENV)/bin/ruff format --check taskruns config tests bench manage.py

# Regenerate the committed schema after an API change (tests/test_schema.py compares them).
schema: setup
	$(PY) manage.py spectacular --validate --fail-on-warn --file openapi.yml

# The browser test drives Debian's Chromium; install it when it is missing (needs root).
chromium:
	@command -v chromium >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

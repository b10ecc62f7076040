# `make run` and `make test` work on a fresh clone: each sets everything up first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# The second supported combination: Python 3.12 with Django 6.1 (pyenv's 3.12, else PATH's).
PYTHON_NEXT ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12) python3.12)
VENV_NEXT := .venv-django61
PY_NEXT := $(VENV_NEXT)/bin/python
# The PostgreSQL run of the suite; pytest-django creates and drops test_<name> itself.
PG_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres

# The HTTP contract tests, which also run against the foreign host (tests/foreign_host/: an
# adopting project with its own user model, DRF defaults and URL prefix) with its own tests.
CONTRACT_TESTS := tests/foreign_host tests/test_patch.py tests/test_transitions.py tests/test_resume.py \
	tests/test_run_actions.py tests/test_preconditions.py tests/test_access.py tests/test_tasks.py \
	tests/test_bad_input.py tests/test_signals.py tests/test_isolation_matrix.py \
	tests/test_authentication.py tests/test_serializers.py tests/test_keys_command.py tests/test_admin.py \
	tests/test_concurrency.py tests/test_lifecycle.py tests/test_reaper.py tests/test_run_lists.py tests/test_feed.py \
	tests/test_browsable.py
NOT_SERVICES := not postgres and not browser and not agent_client and not faults

.PHONY: setup setup-next run test test-sqlite test-postgres test-foreign test-pgbouncer test-django61 lint schema examples chromium pgbouncer

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

$(VENV_NEXT)/.installed: pyproject.toml
	$(PYTHON_NEXT) -m venv $(VENV_NEXT)
	$(PY_NEXT) -m pip install --quiet --upgrade pip
	$(PY_NEXT) -m pip install --quiet -e '.[dev]' 'Django>=6.1,<6.2'
	touch $@

setup-next: $(VENV_NEXT)/.installed

# uvicorn serves every route of the demo (config/asgi.py), the live streams included.
run: setup
	$(PY) manage.py migrate
	$(PY) manage.py taskruns_demo
	$(PY) -m uvicorn config.asgi:application --host 127.0.0.1 --port 8000

# The whole suite: SQLite (everything but the PostgreSQL, browser and agent-client tests), then
# PostgreSQL (everything, those included), then the contract tests against the foreign host on
# both, then the contract tests through PgBouncer in transaction mode, then Python 3.12 +
# Django 6.1 (SQLite everything, PostgreSQL all but the browser, agent-client and fault tests,
# the foreign host on both). A test is never skipped for a missing service.
test: setup chromium pgbouncer test-sqlite test-postgres test-foreign test-pgbouncer test-django61

test-sqlite: setup
	$(PY) -m pytest -m "$(NOT_SERVICES)"

test-postgres: setup pgbouncer
	DATABASE_URL=$(PG_DATABASE_URL) $(PY) -m pytest

test-foreign: setup pgbouncer
	$(PY) -m pytest --ds=tests.foreign_host.settings -m "$(NOT_SERVICES)" $(CONTRACT_TESTS)
	DATABASE_URL=$(PG_DATABASE_URL) $(PY) -m pytest --ds=tests.foreign_host.settings $(CONTRACT_TESTS)

# The contract tests, the concurrency and feed tests through Debian's PgBouncer in transaction
# mode (started by the run itself, as the postgres user), with persistent connections and no
# prepared statements: the production topology (tests/pgbouncer.py).
test-pgbouncer: setup pgbouncer
	$(PY) -m tests.pgbouncer -p no:cacheprovider $(filter-out tests/foreign_host,$(CONTRACT_TESTS))

test-django61: setup-next pgbouncer
	$(PY_NEXT) -m pytest -m "$(NOT_SERVICES)"
	DATABASE_URL=$(PG_DATABASE_URL) $(PY_NEXT) -m pytest -m "not browser and not agent_client and not faults"
	$(PY_NEXT) -m pytest --ds=tests.foreign_host.settings -m "$(NOT_SERVICES)" $(CONTRACT_TESTS)
	DATABASE_URL=$(PG_DATABASE_URL) $(PY_NEXT) -m pytest --ds=tests.foreign_host.settings $(CONTRACT_TESTS)

# ruff, and mypy strict on taskruns/ with the Django and DRF stubs (pyproject's [tool.mypy]).
lint: setup
	$(VENV)/bin/ruff check taskruns config tests bench manage.py
	$(VENV)/bin/ruff format --check taskruns config tests bench manage.py
	$(VENV)/bin/mypy

# Regenerate the committed schema after an API change (tests/test_schema.py compares them).
schema: setup
	$(PY) manage.py spectacular --validate --fail-on-warn --file openapi.yml

# Record the schema's examples again from a real run through the API (after changing what the
# API answers), then the schema that carries them.
examples: setup
	TASKRUNS_RECORD_EXAMPLES=1 $(PY) -m pytest -q -p no:randomly tests/test_schema_examples.py
	$(MAKE) schema

# The PgBouncer tests use Debian's PgBouncer; install it when it is missing (needs root).
pgbouncer:
	@[ -x /usr/sbin/pgbouncer ] || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer)

# The browser test drives Debian's Chromium; install it when it is missing (needs root).
chromium:
	@command -v chromium >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

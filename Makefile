# Cardvault — the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_SETTINGS := config.settings.test

.PHONY: venv demo test lint format worker beat messages bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## make demo: seed a demo platform and serve it at http://127.0.0.1:8000 (SQLite unless DATABASE_URL is set)
demo: $(STAMP)
	$(BIN)/python -m config.demo_env
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py runserver 127.0.0.1:8000

## make test: lint, then the whole suite on PostgreSQL and Redis
test: lint
	DJANGO_SETTINGS_MODULE=$(TEST_SETTINGS) $(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_SETTINGS_MODULE=$(TEST_SETTINGS) $(BIN)/mypy .
	DJANGO_SETTINGS_MODULE=$(TEST_SETTINGS) $(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/bandit -c pyproject.toml -r . -q --severity-level medium
	$(BIN)/python scripts/pip_audit_check.py

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

worker: $(STAMP)
	$(BIN)/celery -A config worker --loglevel=INFO

beat: $(STAMP)
	$(BIN)/celery -A config beat --loglevel=INFO

## make messages: refresh the .po catalogues and compile them (needs gettext)
messages: $(STAMP)
	$(BIN)/python manage.py makemessages -l zh_Hans -l en --ignore=.venv --ignore=tests --ignore=bench
	$(BIN)/python manage.py compilemessages --ignore=.venv

## make bench: hot paths against floors measured in the same run (PostgreSQL and Redis as for
## make test; docs/performance.md). BENCH_FLAGS=--quick for a short run, --json PATH to keep it.
BENCH_FLAGS ?=
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_FLAGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache staticfiles

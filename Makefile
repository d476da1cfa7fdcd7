# Two commands on a fresh machine with Python 3.11: `make run` and `make test`.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DASHBOARD_PORT ?= 8000
DCS_SIMULATOR_PORT ?= 8765
export DASHBOARD_PORT DCS_SIMULATOR_PORT PYTHONUNBUFFERED=1

# With cloud credentials the simulator is not started.
PROCESSES := $(if $(HUAWEICLOUD_SDK_AK),worker beat web,simulator worker beat web)

.PHONY: run serve test lint format check clean bench bench-seed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

## run: set up, migrate, print the demo login, start simulator + worker + beat + web (Ctrl-C stops all)
run: $(VENV)/.runtime
	@test "$(DASHBOARD_PORT)" != "$(DCS_SIMULATOR_PORT)" || { echo "make run: DASHBOARD_PORT and DCS_SIMULATOR_PORT are both $(DASHBOARD_PORT); give one of them another port" >&2; exit 2; }
	$(BIN)/python manage.py migrate --no-input -v0
	$(BIN)/python manage.py demo_admin --url http://127.0.0.1:$(DASHBOARD_PORT)/
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho -f Procfile.dev start $(PROCESSES)

## serve: production: migrate, collectstatic, then gunicorn + worker + beat (Procfile) on PostgreSQL and Redis
serve: export DASHBOARD_MANIFEST_STATIC = true
serve: $(VENV)/.runtime
	@test -n "$$DATABASE_URL" || { echo "make serve: set DATABASE_URL, e.g. postgres://dcs:...@127.0.0.1:5432/dcs" >&2; exit 2; }
	@test -n "$$REDIS_URL" || { echo "make serve: set REDIS_URL, e.g. redis://127.0.0.1:6379/0" >&2; exit 2; }
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py collectstatic --no-input -v0
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho -f Procfile start

## test: the test suite (SQLite and the embedded broker unless DATABASE_URL/REDIS_URL say otherwise),
## one process per core (TEST_WORKERS=0: one process)
TEST_WORKERS ?= auto
test: $(VENV)/.dev
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check: $(VENV)/.dev
	$(BIN)/python manage.py check
	$(BIN)/python manage.py makemigrations --check --dry-run

## bench: seed a database of its own (BENCH_RECORDS=2000000 BENCH_INSTANCES=2000) and measure issue 6's targets
bench: $(VENV)/.runtime
	$(BIN)/python bench/run.py $(BENCH_FLAGS)

## bench-seed: only seed the benchmark's database (bench/run.py --only seed)
bench-seed: $(VENV)/.runtime
	$(BIN)/python bench/run.py --only seed $(BENCH_FLAGS)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache

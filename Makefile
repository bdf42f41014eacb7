# tierline: `make demo` and `make test` are all a newcomer needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint bench bench-ui bench-policy bench-scale serve ui clean lock

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: venv  ## migrate, start the API (:8000) and review UI (:8501), feed a demo task
	TIERLINE_ENV=dev $(BIN)/tierline demo

# The two phases run side by side (two cores; each pytest is one process), the PostgreSQL
# phase's report printed after the SQLite phase's; either failing (exit 5, no tests,
# included) fails the target.
PG_LOG := tests/artifacts/pytest-postgresql.log

test: venv chromium postgres  ## the whole test suite, on SQLite and on PostgreSQL (side by side)
	@mkdir -p tests/artifacts
	@$(BIN)/python -m pytest --backend postgresql > $(PG_LOG) 2>&1 & pg=$$!; \
	$(BIN)/python -m pytest; sqlite=$$?; \
	wait $$pg; postgresql=$$?; \
	echo "=== PostgreSQL phase ($(PG_LOG)) ==="; cat $(PG_LOG); \
	echo "=== SQLite phase: exit $$sqlite; PostgreSQL phase: exit $$postgresql ==="; \
	test $$sqlite -eq 0 && test $$postgresql -eq 0

# PostgreSQL for the second test phase and bench-scale: 127.0.0.1:5432, user postgres (trust).
# Each test run creates databases of its own (tierline_test_*) and drops them at the end.
PG_HOST ?= 127.0.0.1
PG_PORT ?= 5432

.PHONY: postgres
postgres:  ## start the local PostgreSQL cluster when it is not running
	@pg_isready -q -h $(PG_HOST) -p $(PG_PORT) || { \
	  test -d /etc/postgresql && ls /etc/postgresql | grep -q . || { \
	    echo "PostgreSQL is not installed: make test needs it on $(PG_HOST):$(PG_PORT)"; exit 1; }; \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | sort -V | tail -1) main start; }
	@for i in $$(seq 30); do pg_isready -q -h $(PG_HOST) -p $(PG_PORT) && exit 0; sleep 1; done; \
	  echo "PostgreSQL did not come up on $(PG_HOST):$(PG_PORT)"; exit 1

.PHONY: chromium
chromium:  ## Debian's Chromium for the browser test (tests/review_ui/test_browser_e2e.py)
	test -x /usr/bin/chromium || (apt-get update -q && apt-get install -y -q chromium)

lint: venv  ## ruff over everything, mypy over the packages (DESIGN.md: ruff and mypy clean)
	$(BIN)/ruff check api learner review_ui tests bench
	$(BIN)/mypy api learner review_ui

bench: venv  ## API throughput and latency against a bare FastAPI endpoint (BENCHMARKS.md)
	$(BIN)/python bench/api_bench.py

bench-ui: venv chromium  ## label key -> next case on screen, 100,000 cases queued
	$(BIN)/python bench/ui_bench.py

bench-policy: venv  ## certified automation: validity, efficiency, drift, active learning
	$(BIN)/python bench/policy_bench.py

.PHONY: bench-audit
bench-audit: venv  ## what the audit trail costs on the case write path; audit verify speed
	$(BIN)/python bench/audit_bench.py

.PHONY: bench-import
bench-import: venv  ## bulk import of labelled history and of cases vs the bare learner loop
	$(BIN)/python bench/import_bench.py

.PHONY: bench-quality
bench-quality: venv  ## noisy reviewers: single labels vs second opinions vs overlap
	$(BIN)/python bench/quality_bench.py

.PHONY: bench-review bench-learner bench-soak
bench-review: venv  ## claim-and-label cycles per second through the review routes
	$(BIN)/python bench/review_bench.py

bench-learner: venv  ## learner overhead per case against river's own predict_proba_one
	$(BIN)/python bench/learner_bench.py

bench-soak: venv  ## memory and reads with 1,000,000 stored cases, 10-minute mixed soak
	nice $(BIN)/python bench/soak_bench.py

bench-scale: venv postgres  ## scale-out: 1/2/4 processes on PostgreSQL vs SQLite, 1M-case claims
	$(BIN)/python bench/scale_bench.py

serve: venv
	TIERLINE_ENV=dev $(BIN)/tierline serve

ui: venv
	$(BIN)/tierline ui

lock:  ## re-pin every dependency after changing pyproject.toml
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

clean:
	rm -rf $(VENV) build *.egg-info

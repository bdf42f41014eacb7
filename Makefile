# tierline: `make demo` and `make test` are all a newcomer needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint bench bench-ui bench-policy serve ui clean lock

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: venv  ## migrate, start the API (:8000) and review UI (:8501), feed a demo task
	TIERLINE_ENV=dev $(BIN)/tierline demo

test: venv chromium  ## the whole test suite
	$(BIN)/python -m pytest

.PHONY: chromium
chromium:  ## Debian's Chromium for the browser test (tests/review_ui/test_browser_e2e.py)
	test -x /usr/bin/chromium || (apt-get update -q && apt-get install -y -q chromium)

lint: venv
	$(BIN)/ruff check api learner review_ui tests bench

bench: venv  ## API throughput and latency against a bare FastAPI endpoint (BENCHMARKS.md)
	$(BIN)/python bench/api_bench.py

bench-ui: venv chromium  ## label key -> next case on screen, 100,000 cases queued
	$(BIN)/python bench/ui_bench.py

bench-policy: venv  ## certified automation: validity, efficiency, drift, active learning
	$(BIN)/python bench/policy_bench.py

serve: venv
	TIERLINE_ENV=dev $(BIN)/tierline serve

ui: venv
	$(BIN)/tierline ui

lock:  ## re-pin every dependency after changing pyproject.toml
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

clean:
	rm -rf $(VENV) build *.egg-info

# Everything a fresh machine needs is installed from here; nothing by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Quix Streams, the reference app of make bench, pins pydantic<2.14 against our 2.14.3:
# it lives in its own virtualenv, built for make bench only.
QUIX_VENV := .venv-quix
QUIX_STAMP := $(QUIX_VENV)/.installed
QUIX_CONSTRAINTS := benchmarks/quix/constraints.txt
DATA_DIR ?= .local-stack
# A demo's pace: the default rules with minutes for hours (the file says which differ).
DEMO_RULES ?= pipeline/local/demo_rules.yaml

.PHONY: install test lint format demo bench chromium promtool segment-js clean chaos soak

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall only when the declared or pinned dependencies change.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(QUIX_STAMP): $(QUIX_CONSTRAINTS)
	$(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/pip install --quiet --upgrade pip
	$(QUIX_VENV)/bin/pip install --quiet -c $(QUIX_CONSTRAINTS) quixstreams
	touch $(QUIX_STAMP)

# Browser tests drive Debian's chromium; playwright cannot download browsers here.
chromium:
	@test -x /usr/bin/chromium || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The pipeline-health dashboard's PromQL is evaluated by a real Prometheus scraping the
# local stack (tests/integration/test_dashboard_promql_live.py): Debian's package.
promtool:
	@test -x /usr/bin/prometheus || { \
	  echo "installing Debian's prometheus for the dashboard's PromQL test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

# Segment's browser client (analytics-next) for the browser test of /segment/v1: npm ci
# from the committed lock into a gitignored node_modules; node and npm are on the machine.
SEGMENT_JS := tests/e2e/segment_js
$(SEGMENT_JS)/node_modules/.installed: $(SEGMENT_JS)/package.json $(SEGMENT_JS)/package-lock.json
	npm ci --prefix $(SEGMENT_JS) --no-audit --no-fund --loglevel=error
	touch $@

segment-js: $(SEGMENT_JS)/node_modules/.installed

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Two test processes (pytest-xdist), each with its own broker and warehouse: a test
# mostly waits on them or on a subprocess: one process kept the two cores ~35 % busy.
# A file's tests stay in one process, sharing its module fixtures.
TEST_PROCESSES ?= 2
test: install chromium promtool segment-js lint
	$(BIN)/python -m pytest -q -n $(TEST_PROCESSES) --dist loadfile

# Long fault scenarios on the real parts; prints the chaos table (docs/reliability.md).
chaos: install
	$(BIN)/python -m tests.chaos

# The whole local stack under simulated traffic at half a worker's rate; memory, lag,
# errors and decisions per process, then a verdict (docs/reliability.md, "Soak").
SOAK_MINUTES ?= 30
soak: install
	$(BIN)/python -m tests.soak --minutes $(SOAK_MINUTES)

demo: install
	INTENTFLOW_RULES=$(DEMO_RULES) $(BIN)/intentflow local up --data-dir $(DATA_DIR) --simulate

bench: install $(QUIX_STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(QUIX_VENV) .pytest_cache .ruff_cache $(SEGMENT_JS)/node_modules

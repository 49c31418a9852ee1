# quantbench: `make demo` and `make test` work on a fresh machine (they create .venv).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test check lint typecheck bench prometheus chromium clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import quantbench, locust, pytest"
	touch $(STAMP)

## demo: simulated vLLM AWQ/GPTQ/FP16 sweep; prints the report path last
demo: $(STAMP)
	$(VENV)/bin/quantbench demo

# Debian packages the tests use for real: prometheus (server metrics) and chromium (the
# report as a reader sees it); installed when missing and root, else the tests say so.
DEBIAN_TOOLS := prometheus chromium

## test: the whole suite (installs Debian's prometheus and chromium when missing and root)
# Four at once: most tests wait on simulators and stages in real time, not on the CPU
# (2 cores: ~12 min one at a time, ~6 min four at a time). TEST_WORKERS=0: in this process.
TEST_WORKERS ?= 4
test: $(STAMP) $(DEBIAN_TOOLS)
	$(PY) -m pytest -q -n $(TEST_WORKERS)

prometheus chromium:
	@if ! command -v $@ >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing Debian's $@ package"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $@ >/dev/null; \
	  else \
	    echo "$@ is not installed and this is not root: tests that need it will fail" >&2; \
	  fi; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy quantbench loadtest analysis services benchmarks

## check: ruff, mypy and the tests
check: lint typecheck test

## bench: speed figures (printed, never asserted by unit tests)
bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

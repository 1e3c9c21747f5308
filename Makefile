# One command surface: CI runs `make test`; the README documents `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
DEMO_SIZE ?= 1GiB
DEMO_ARGS ?=
PYTEST_ARGS ?=
NPM    ?= npm
# the browser tests (tests/browser): Debian's chromium + chromium-driver, and Uppy 6 from npm
BROWSER_JS := tests/browser/js
UPPY_BUNDLE := $(BROWSER_JS)/dist/uppy.js
STREAMX_CHROMIUM ?= /usr/bin/chromium
STREAMX_CHROMEDRIVER ?= /usr/bin/chromedriver
export STREAMX_CHROMIUM STREAMX_CHROMEDRIVER  # read by tests/browser/harness.py

.PHONY: venv test test-browser browser-deps lint demo bench example clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)

# the 20 slowest tests are listed at the end of every run: the suite's budget is 15 min on 2 cores.
# Parallel (pytest-xdist): most tests wait on servers, sockets and child processes, so 4 workers
# fill 2 cores; --dist loadgroup keeps each xdist_group (the browser, Ray) in one worker.
# PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 4
test: lint browser-deps
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup --durations=20 $(PYTEST_ARGS)

test-browser: $(STAMP) browser-deps
	$(PY) -m pytest tests/browser $(PYTEST_ARGS)

# Installs what the browser tests need; as root (CI) through apt-get, else it says what to run.
browser-deps: $(UPPY_BUNDLE)
	@if [ ! -x $(STREAMX_CHROMIUM) ] || [ ! -x $(STREAMX_CHROMEDRIVER) ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	  else \
	    echo "The browser tests need Chromium and its driver: sudo apt-get install -y chromium chromium-driver" >&2; \
	    echo "(elsewhere: set STREAMX_CHROMIUM= and STREAMX_CHROMEDRIVER= to a Chrome and its matching chromedriver)" >&2; \
	    exit 1; \
	  fi; \
	fi

$(UPPY_BUNDLE): $(BROWSER_JS)/package.json $(BROWSER_JS)/package-lock.json $(BROWSER_JS)/uppy-entry.js $(BROWSER_JS)/uppy.css
	@command -v $(NPM) >/dev/null || { echo "The browser tests need Node.js and npm: sudo apt-get install -y nodejs npm" >&2; exit 1; }
	cd $(BROWSER_JS) && $(NPM) ci --no-audit --no-fund && $(NPM) run build

lint: $(STAMP)
	$(VENV)/bin/ruff check streamx tests benchmarks examples
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports  # the layers and no import cycle: [tool.importlinter] in pyproject.toml

demo: $(STAMP)
	$(PY) examples/demo.py --size $(DEMO_SIZE) $(DEMO_ARGS)

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info

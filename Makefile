# Two entry points: `make run` starts the app, `make test` runs every test. Both install what is
# missing first (a virtual environment in .venv, and Chromium from the system packages for tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8501

.PHONY: run test bench chromium deps dev-deps clean

run: $(VENV)/.deps
	$(BIN)/python -m streamlit run app.py --server.port $(PORT)

test: $(VENV)/.dev-deps chromium
	$(BIN)/python -m pytest -q

bench: $(VENV)/.dev-deps chromium
	$(BIN)/python -m bench.run_all

deps: $(VENV)/.deps
dev-deps: $(VENV)/.dev-deps

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.deps: requirements.txt | $(VENV)/bin/python
	$(BIN)/python -m pip install -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements-dev.txt requirements.txt | $(VENV)/bin/python
	$(BIN)/python -m pip install -r requirements-dev.txt
	touch $(VENV)/.deps $@

# Browser tests drive the Chromium of the system packages; Playwright never downloads its own.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update && $$SUDO apt-get install -y chromium; }

clean:
	rm -rf $(VENV) .pytest_cache

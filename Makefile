# Two entry points: `make run` starts the app, `make test` runs every test. Both install what is
# missing first (a virtual environment in .venv, and Chromium from the system packages for tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8501

.PHONY: run serve serve-model audit test bench bench-deps chromium deps dev-deps clean

run: $(VENV)/.deps
	$(BIN)/python -m streamlit run app.py --server.port $(PORT)

# Classroom server (HOSTING.md): listens on every network address of this machine, keeps data sets
# and runs in DLLAB_DATA, and states the production settings on the command line so they hold
# whatever a local config says. Students open http://<this machine>:$(PORT).
# Training runs in worker processes of a private Ray instance on 127.0.0.1 (DLLAB_RAY_ADDRESS=local);
# DLLAB_RAY_ADDRESS=host:6379 joins a cluster instead, and DLLAB_RAY_ADDRESS= trains in the server.
DLLAB_DATA     ?= $(CURDIR)/data
DLLAB_GPU_JOBS ?= 1
DLLAB_CPU_JOBS ?= 1
DLLAB_RAY_ADDRESS ?= local
DLLAB_GPU_SHARE   ?= 1.0
SESSION_TTL    ?= 120
serve: $(VENV)/.deps
	DLLAB_DATA="$(DLLAB_DATA)" DLLAB_GPU_JOBS=$(DLLAB_GPU_JOBS) DLLAB_CPU_JOBS=$(DLLAB_CPU_JOBS) \
	DLLAB_RAY_ADDRESS="$(DLLAB_RAY_ADDRESS)" DLLAB_GPU_SHARE=$(DLLAB_GPU_SHARE) \
	$(if $(DLLAB_CPU_PER_JOB),DLLAB_CPU_PER_JOB=$(DLLAB_CPU_PER_JOB)) \
	OMP_WAIT_POLICY=PASSIVE MALLOC_ARENA_MAX=2 $(BIN)/python -m streamlit run app.py \
	  --server.address 0.0.0.0 --server.port $(PORT) --server.headless true \
	  --server.fileWatcherType none --server.runOnSave false --server.maxUploadSize 50 \
	  --server.enableXsrfProtection true --server.disconnectedSessionTTL $(SESSION_TTL) \
	  --runner.postScriptGC false \
	  --client.showErrorDetails none --client.toolbarMode minimal --browser.gatherUsageStats false

# The inference service for one saved run (README, "Serving a model"): FastAPI on uvicorn at
# http://$(MODEL_HOST):$(MODEL_PORT); `curl -F file=@photo.jpg http://127.0.0.1:8000/predict`.
RUN        ?=
MODEL_HOST ?= 127.0.0.1
MODEL_PORT ?= 8000
serve-model: $(VENV)/.deps
	@test -n "$(RUN)" || { echo "usage: make serve-model RUN=<run id> (the id from the Explorer's Export tab)"; exit 2; }
	DLLAB_DATA="$(DLLAB_DATA)" $(BIN)/python -m engine.serve --run="$(RUN)" --host $(MODEL_HOST) --port $(MODEL_PORT)

# pip-audit itself, for a machine that reaches its vulnerability services (PyPI's per-release JSON
# or OSV); `make test` runs the dependency-free .ci/audit.py instead. See HOSTING.md, "Security audit".
AUDIT := .venv-audit
audit:
	test -x $(AUDIT)/bin/pip-audit || { $(PYTHON) -m venv $(AUDIT) && $(AUDIT)/bin/pip install --quiet pip-audit==2.10.1; }
	$(AUDIT)/bin/pip-audit --no-deps --disable-pip --progress-spinner off -r requirements.txt -r requirements-dev.txt

# Every test, then the audit of the pinned requirements against PyPI's advisories (.ci/audit.py:
# standard library only; a vulnerable pin fails the run, an unreachable index only warns).
test: $(VENV)/.dev-deps chromium
	$(BIN)/python -m pytest -q; t=$$?; \
	$(BIN)/python .ci/audit.py requirements.txt requirements-dev.txt; a=$$?; \
	exit $$(( t || a ))

bench: $(VENV)/.dev-deps chromium bench-deps
	$(BIN)/python -m bench.run_all

# fastai for the throughput comparison only: pure-Python packages in their own folder, put on
# sys.path by that benchmark's subprocess; the app's .venv (and its pinned torch) is not touched.
FASTAI_PKGS := bench/.fastai-pkgs
bench-deps: $(FASTAI_PKGS)/.installed
$(FASTAI_PKGS)/.installed: requirements-bench.txt | $(VENV)/bin/python
	rm -rf $(FASTAI_PKGS)
	$(BIN)/python -m pip install --quiet --no-deps --target $(FASTAI_PKGS) -r requirements-bench.txt
	touch $@

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

# hecate: every entry point sets up what it needs from nothing (a venv in .venv, Debian's nginx and chromium).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Parallel workers for `make test`; a test file stays on one worker (--dist loadfile) so module- and
# package-scoped stacks (the integration master + minion) start at most once per worker.
PYTEST_WORKERS ?= 2

.PHONY: setup test lint unit demo demo-stop bench validate clean

$(STAMP): setup.cfg pyproject.toml requirements-test.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $$($(PY) -c 'import configparser; c = configparser.ConfigParser(); c.read("setup.cfg"); print(c["options"]["install_requires"])') -r requirements-test.txt  # one resolve: requirements-test.txt pins the Salt the tests run on
	@{ { command -v nginx >/dev/null || test -x /usr/sbin/nginx; } && \
	   { test -e /usr/lib/nginx/modules/ngx_stream_module.so || ! { PATH=$$PATH:/usr/sbin nginx -V 2>&1 | grep -q 'with-stream=dynamic'; }; }; } || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light libnginx-mod-stream >/dev/null \
	      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light libnginx-mod-stream >/dev/null; }; \
	  else echo "nginx is missing: install Debian's nginx-light and libnginx-mod-stream for the nginx -t tests" >&2; exit 1; fi; \
	  systemctl stop nginx >/dev/null 2>&1 || service nginx stop >/dev/null 2>&1 || true; }  # the tests need the binary, not Debian's daemon on :80
	@command -v chromium >/dev/null || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
	      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; \
	  else echo "chromium is missing: install Debian's chromium for the browser test of hecate.report" >&2; exit 1; fi; }
	touch $(STAMP)

setup: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	TMPDIR=/tmp $(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=15 $(PYTEST_ARGS)

unit: $(STAMP)
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

validate: $(STAMP)
	$(PY) _utils/hecatelib/cli.py pillar/hecate.sls

demo: $(STAMP)
	$(PY) demo/run.py

demo-stop:
	$(PY) demo/run.py --stop

bench: $(STAMP)
	@command -v wrk >/dev/null || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null \
	      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null; } \
	      || echo "bench: wrk is not installable; a Python load generator stands in (RESULTS.md says so)" >&2; \
	  else echo "bench: wrk is missing (apt-get install wrk); a Python load generator stands in" >&2; fi; }
	TMPDIR=/tmp $(PY) bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .cache

# Two commands on a fresh machine:
#   make run    set up and run the server with embedded defaults and 3 simulated units
#   make test   set up, lint (ruff, mypy) and run the whole test suite (installs redis-server, postgresql, chromium, ffmpeg,
#               fonts-noto-cjk, prometheus, janus when root)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := redis-server postgresql chromium ffmpeg fonts-noto-cjk prometheus janus
PYTEST_ARGS ?=

.PHONY: run test lint install system-deps bench clean

$(STAMP): pyproject.toml setup.py media/_dataplane.c media/_ingress.c media/_dataplane.h media/_codec_rules.h media/_assembly.c console/package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	cd console && npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) -m dispatch_server --config config.toml serve --demo 3

system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	{ command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || missing="$$missing postgresql"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	command -v ffprobe >/dev/null || missing="$$missing ffmpeg"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v cc >/dev/null || missing="$$missing gcc"; \
	test -f "$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" || missing="$$missing python3-dev"; \
	fc-list :lang=zh 2>/dev/null | grep -q . || missing="$$missing fonts-noto-cjk"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v janus >/dev/null || missing="$$missing janus"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "the tests need these Debian packages:$$missing"; \
	    echo "install them with: sudo apt-get install$$missing"; exit 1; \
	  fi; \
	fi

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: system-deps install lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: system-deps install
	$(PY) -m bench.relay

clean:
	rm -rf $(VENV) console/node_modules

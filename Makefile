# Two commands do all the set-up on a fresh machine (Python 3.11+):
#   make demo   # virtual environment + everything stimgen needs (photos and experiments
#               # included), then the demo build
#   make test   # the same, plus test tools and system packages, then the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0

.PHONY: demo test install install-test system-deps browser-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch is pinned and installed first, so that no other requirement pulls a different build.
# PsychoPy goes in last, with --no-deps: its own dependency list pulls GUI toolkits and media
# libraries that the experiment compiler and a pyglet window never import (see the file).
# Once it is in, every later `pip install` here would list those deliberately absent packages
# as "dependency conflicts"; --no-warn-conflicts keeps that list out. pip still resolves
# everything it installs, and the tests import each PsychoPy module that stimgen uses.
PIP := $(BIN)/python -m pip install --quiet --no-warn-conflicts

# The `photos` extra (face-alignment, for photo identities) goes in with stimgen, before
# PsychoPy, so that every protocol in docs/ builds from this environment.
$(VENV)/.installed: $(BIN)/python pyproject.toml requirements-psychopy.txt
	$(PIP) "$(TORCH)"
	$(PIP) -e ".[photos]"
	$(PIP) --no-deps -r requirements-psychopy.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(PIP) -e ".[test]" -r requirements-test.txt
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# Debian packages the end-to-end tests use (Xvfb for PsychoPy, Chromium for the report and
# the online experiments).
system-deps:
	bash .ci/system-deps.sh

# The libraries PsychoJS's index.html loads from a CDN (jquery, jquery-ui, preloadjs), as their
# npm packages (pinned, sha512-checked), for the browser tests of online bundles: they run
# offline. Fetched with npm once (without npm the tests are skipped, saying so); see
# tests/psychojs_browser.py.
BROWSER_DEPS ?= build/browser-deps
browser-deps: install-test
	$(BIN)/python tests/psychojs_browser.py --fetch $(BROWSER_DEPS)

demo: install
	$(BIN)/stimgen build protocols/demo.yaml

test: install-test system-deps browser-deps
	$(BIN)/python -m pytest

bench: install-test
	$(BIN)/python benchmarks/bench_build.py

clean:
	rm -rf build/ .pytest_cache

# Two verbs matter on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JS_SDK := tests/js/node_modules/backendless/package.json
# The console's tests drive Debian's Chromium (never a browser downloaded by Playwright).
CHROMIUM ?= /usr/bin/chromium

.PHONY: run test soak fuzz lint bench bench-quick install clean browser screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

$(JS_SDK): tests/js/package.json
	cd tests/js && npm install --no-audit --no-fund --silent
	touch $(JS_SDK)

run: $(STAMP)
	$(BIN)/devreg run

# Installs Debian's chromium when it is missing and we may (root, apt-get); else stops here
# and says how. The tests fail the same way if it is still missing: never skipped.
browser:
	@if [ -x "$(CHROMIUM)" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's chromium for the console tests (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi; \
	if [ ! -x "$(CHROMIUM)" ]; then \
		echo "The console tests need Chromium at $(CHROMIUM): install it with"; \
		echo "  sudo apt-get install chromium   (Debian, Ubuntu)"; \
		echo "or point CHROMIUM=/path/to/chromium at one (make test CHROMIUM=...)."; \
		exit 1; \
	fi

test: $(STAMP) $(JS_SDK) browser
	DEVREG_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest

# The README's pictures of the console (docs/console/*.png), taken by the same browser.
screenshots: $(STAMP) browser
	DEVREG_CHROMIUM=$(CHROMIUM) $(BIN)/python -m tests.integration.console.screenshots docs/console

# The crash-recovery tests at soak size (DEVREG_SOAK=1): SIGKILLs in a 50k-command stream and
# in a 50k-device expiry burst (~3 min on 2 cores). `make test` runs them at a few thousand.
soak: $(STAMP)
	DEVREG_SOAK=1 $(BIN)/python -m pytest -s \
		tests/integration/test_crash_recovery.py tests/integration/test_expiry_crash.py \
		tests/integration/test_embedded_crash.py

# Fuzzing with a large budget (Hypothesis profile `fuzz`) and a random seed, printed before and
# after the run (`SEED=<n> make fuzz` repeats one): hypothesis on every parameter parser and
# rule, schemathesis on every operation of the OpenAPI document against a real worker.
FUZZ_TESTS := tests/unit/test_params.py tests/unit/test_rules_properties.py \
	tests/integration/test_openapi.py
fuzz: $(STAMP)
	@seed=$${SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; \
	echo "make fuzz: seed $$seed"; \
	$(BIN)/python -m pytest -p no:cacheprovider --hypothesis-profile=fuzz \
		--hypothesis-seed=$$seed $(FUZZ_TESTS); status=$$?; \
	echo "make fuzz: seed $$seed (SEED=$$seed make fuzz runs it again)"; exit $$status

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Full run (~20 min on 2 cores): writes docs/benchmarks.md. `ARGS=--only get` to pick rows.
bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

# Smoke test (~1 min): small sizes, one run, prints the table, writes nothing.
bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick $(ARGS)

clean:
	rm -rf $(VENV) tests/js/node_modules

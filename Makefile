# Two commands on a fresh machine: `make run` and `make test`. Both create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test lint format format-check bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,lint]'
	rm -f $(VENV)/.installed-*
	touch $@

run: $(STAMP)
	$(VENV)/bin/bookingsync run

test: $(STAMP)
	$(PY) -m pytest

# The gates CI runs before the tests: ruff's lint rules, mypy over models/adapters/worker against
# its baseline (.ci/typecheck.py), the layer contract (worker -> adapters -> models), and the
# formatting (`make format` fixes it); first, that no merge-conflict marker was committed.
lint: $(STAMP)
	@if git grep -n -I -E '^(<<<<<<<|>>>>>>>)( |$$)' -- . ; then echo 'lint: merge-conflict markers above' >&2; exit 1; fi
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) .ci/typecheck.py
	$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_layers.py tests/unit/test_packaging.py

format: $(STAMP)
	$(VENV)/bin/ruff format .

format-check: $(STAMP)
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	bash bench/run_all.sh

clean:
	rm -rf $(VENV) bookingsync.db bookingsync.db-wal bookingsync.db-shm

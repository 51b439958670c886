# Two commands on a fresh machine: `make run` and `make test`. Both create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

run: $(STAMP)
	$(VENV)/bin/bookingsync run

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	bash bench/run_all.sh

clean:
	rm -rf $(VENV) bookingsync.db bookingsync.db-wal bookingsync.db-shm

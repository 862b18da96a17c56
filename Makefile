# Every target sets up what it needs: a fresh clone only needs python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench
DOCS_STAMP := $(VENV)/.installed-docs
MATRIX_STAMP := $(VENV)/.installed-matrix
DIST_STAMP := $(VENV)/.installed-dist

.PHONY: install test test-all typecheck dist lint bench bench-kernel bench-http bench-fanout bench-ws bench-files bench-hardening nginx demo fuzz docs clean redis bench-redis postgres tfb-db bench-db
.PHONY: board chromium iproute2

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(STAMP)

test: typecheck
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

# The suite on every supported CPython found on the machine (noxfile.py);
# extra pytest arguments: make test-all PYTEST_ARGS='-x tests/test_kernel.py'
$(MATRIX_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[test,matrix]'
	touch $@

test-all: $(MATRIX_STAMP)
	$(BIN)/nox $(NOX_ARGS) -- $(PYTEST_ARGS)

# mypy --strict on corofw/ (pyproject.toml's [tool.mypy]); make test runs it first.
typecheck: $(STAMP)
	$(BIN)/mypy corofw

# The sdist and wheel in dist/, checked as an index would check them.
$(DIST_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[test,dist]'
	touch $@

dist: $(DIST_STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[test,bench]'
	command -v wrk >/dev/null || (apt-get install -y -q wrk >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null))
	touch $@

bench: bench-kernel bench-http bench-fanout

bench-kernel: $(BENCH_STAMP)
	$(BIN)/python benchmarks/kernel_bench.py

bench-http: $(BENCH_STAMP)
	$(BIN)/python benchmarks/http_bench.py

bench-fanout: $(BENCH_STAMP)
	$(BIN)/python benchmarks/fanout_bench.py

bench-ws: $(BENCH_STAMP)
	$(BIN)/python benchmarks/ws_bench.py

# A 1 MiB static file (corofw, aiohttp, nginx) and a 200 MiB upload (corofw,
# aiohttp); nginx is installed if it can be, and left out of the run if not.
bench-files: $(BENCH_STAMP)
	-$(MAKE) --no-print-directory nginx
	$(BIN)/python benchmarks/files_bench.py

bench-hardening: $(BENCH_STAMP)
	$(BIN)/python benchmarks/hardening_bench.py

bench-redis: $(BENCH_STAMP) redis
	$(BIN)/python benchmarks/redis_bench.py

# The TechEmpower database tests and database waits, against a throwaway
# PostgreSQL and Redis that the benchmark starts itself (about 15 minutes).
bench-db: $(BENCH_STAMP) postgres redis
	$(BIN)/python benchmarks/db_bench.py

# nginx for tests/test_nginx.py (skipped without it): Debian's nginx-light.
nginx:
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null && \
		 DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light >/dev/null)

# iproute2's `ip` for the network namespaces of tests/test_multihost.py (without it
# the test puts its three hosts on loopback addresses instead).
iproute2:
	command -v ip >/dev/null || test -x /usr/sbin/ip || test -x /sbin/ip || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2 >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null && \
		 DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2 >/dev/null)

# redis-server for the Redis tests (skipped without it) and benchmarks/redis_bench.py.
redis:
	command -v redis-server >/dev/null || test -x /usr/bin/redis-server || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null && \
		 DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null)

# PostgreSQL for the PostgreSQL tests (skipped without it): Debian's postgresql
# (the tests run initdb and pg_ctl from /usr/lib/postgresql/*/bin).
postgres:
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null && \
		 DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null)

# The TechEmpower schema (world, fortune) in the database at DATABASE_URL, for apps/tfb.py.
tfb-db: $(STAMP)
	$(BIN)/python -m apps.tfb create-db

demo: $(STAMP)
	$(BIN)/python apps/demo.py

# The board (apps/board) on its own throwaway PostgreSQL, with the stand-in backend:
# prints the URL to open; Ctrl-C stops all three. BOARD_PORT (8000) sets the port.
board: $(STAMP) postgres
	$(BIN)/python -m apps.board dev

# Debian's Chromium and its driver for the browser tests (tests/test_board_browser.py,
# skipped without them).
chromium:
	(command -v chromium && command -v chromedriver) >/dev/null || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null && \
		 DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null)

$(DOCS_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[test,docs]'
	touch $@

# The API reference, from the docstrings, as HTML in docs/api/ (open docs/api/index.html).
# Every module is named: pdoc alone would follow only the packages' __all__.
API_MODULES = $(shell find corofw -name '*.py' ! -name '__main__.py' | \
	sed -e 's|/__init__\.py$$||' -e 's|\.py$$||' -e 's|/|.|g' | sort)

docs: $(DOCS_STAMP)
	rm -rf docs/api
	$(BIN)/pdoc --docformat restructuredtext --output-directory docs/api $(API_MODULES)

FUZZ_SECONDS ?= 120
fuzz: $(STAMP)
	$(BIN)/pip install -q -e '.[test,fuzz]'
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -q tests/test_parser*.py tests/test_fuzz_regressions.py
	mkdir -p .fuzz-corpus
	$(BIN)/python tests/fuzz/fuzz_request_parser.py -max_total_time=$(FUZZ_SECONDS) \
		-artifact_prefix=tests/fuzz/crashes/ .fuzz-corpus tests/fuzz/seeds

clean:
	rm -rf $(VENV) .nox .pytest_cache .hypothesis .ruff_cache .mypy_cache build dist

#!/bin/sh
# Run every benchmark at its default size, one after the other (they share the machine's cores).
# Usage: bench/run_all.sh            (from the repository root, or anywhere)
set -e
cd "$(dirname "$0")/.."
PY=.venv/bin/python
$PY bench/ingest.py
echo
$PY bench/timers.py
echo
$PY bench/memory.py
echo
$PY bench/feed.py
$PY bench/scrape.py
echo
if command -v wrk >/dev/null; then $PY bench/ingress.py; else echo "ingress.py skipped: install wrk (apt-get install wrk)"; fi
echo
$PY bench/egress.py
echo
$PY bench/pipeline.py
echo
$PY bench/burst.py
echo
$PY bench/mirror.py
echo
$PY bench/precision.py

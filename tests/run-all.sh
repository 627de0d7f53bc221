#!/usr/bin/env bash
# The project's test command (README "Run the tests"): Rust tests, then the interoperability
# tests that read our files with zarr-python, tifffile, pandas, DuckDB and spam 0.9.1.
# The Python packages install in the background while Rust builds and tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q -r tests/python/requirements.txt > .venv/pip.log 2>&1 &
PIP=$!
cargo test --workspace
if ! wait "$PIP"; then
  cat .venv/pip.log
  echo "installing the Python test packages failed"
  exit 1
fi
.venv/bin/python -m pytest -q tests/python

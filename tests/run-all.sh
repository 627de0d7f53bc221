#!/usr/bin/env bash
# The project's test command (README "Run the tests"): Rust tests, then the interoperability
# tests that read our files with zarr-python, tifffile, pandas and DuckDB.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q -r tests/python/requirements.txt
cargo test --workspace
.venv/bin/python -m pytest -q tests/python

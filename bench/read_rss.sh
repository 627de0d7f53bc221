#!/usr/bin/env bash
# Reading a volume many times larger than the chunk cache keeps memory flat: peak RSS of
# `dvc-stream stats` over a 1 GiB Zarr store with --cache-bytes 64M, and with 256M.
# Usage: bash bench/read_rss.sh   (after bench/tiff2zarr.sh has made bench/out/a.zarr)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
STORE=bench/out/a.zarr
[ -d "$STORE" ] || { echo "run bench/tiff2zarr.sh first"; exit 1; }
for c in 64M 256M; do
  /usr/bin/time -f "cache $c: %e s, peak RSS %M KiB" ./target/release/dvc-stream stats "$STORE" --cache-bytes "$c" --stats -q 2>&1 | grep -E "cache|peak"
done

#!/usr/bin/env bash
# Reading a volume many times larger than the chunk cache keeps memory flat: peak RSS of
# `dvc-stream stats` over a 1 GiB Zarr store at two cache budgets, three runs each, and of
# the process reading a tiny volume (its fixed cost).
# Usage: bash bench/read_rss.sh   (after bench/tiff2zarr.sh has made bench/out/a.zarr)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
STORE=bench/out/a.zarr
[ -d "$STORE" ] || { echo "run bench/tiff2zarr.sh first"; exit 1; }
./target/release/dvc-stream synth bench/out/tiny --shape 16 --overwrite -q
/usr/bin/time -f "tiny volume: peak RSS %M KiB" ./target/release/dvc-stream stats bench/out/tiny/im1.zarr -q 2>&1 | grep peak
for c in 64M 256M; do
  for i in 1 2 3; do
    /usr/bin/time -f "cache $c run $i: %e s, peak RSS %M KiB" ./target/release/dvc-stream stats "$STORE" --cache-bytes "$c" -q 2>&1 | grep peak
  done
done

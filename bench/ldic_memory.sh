#!/usr/bin/env bash
# Out of core: ldic over synthetic uint16 Zarr pairs of 512³ (256 MiB each) and 1024³ (2 GiB
# each) with --cache-bytes 256M; peak RSS of both runs, which should be flat.
# Usage: bash bench/ldic_memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
D=./target/release/dvc-stream
for N in 512 1024; do
  OUT=bench/out/mem-$N
  if [ ! -d "$OUT/im2.zarr" ]; then
    $D synth "$OUT" --shape "$N" --dtype uint16 --speckle 4 --noise 100 --translate 1.3 -2.7 0.4 --truth-ns 32 --overwrite -q
  fi
  /usr/bin/time -f "$N³: %e s, peak RSS %M KiB" $D ldic "$OUT/im1.zarr" "$OUT/im2.zarr" -o 1 -ns 32 -hws 10 -np 2 \
    -pf "$OUT/truth-registration.tsv" --cache-bytes 256M -od "$OUT" -q --stats 2>&1 | grep -E "cache|peak|points"
done

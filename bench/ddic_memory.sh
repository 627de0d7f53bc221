#!/usr/bin/env bash
# ddic out of core: a granular pair and its label volume, each larger than the cache budget
# (Zarr, uint16; the cache holds f32), correlated with --cache-bytes 64M. Reports peak RSS
# against cache + 256 MiB, and the cache's own peak.
# Usage: bash bench/ddic_memory.sh [SIZE] [GRAINS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-256}
G=${2:-1200}
OUT=bench/out/ddic-mem-$N
mkdir -p "$OUT"
cargo build --release -q
D=./target/release/dvc-stream
if [ ! -d "$OUT/lab1.zarr" ]; then
  $D synth "$OUT" --grains "$G" --shape "$N" --grain-radius 5 10 --grain-max-translation 1 --grain-max-rotation 3 \
    --dtype uint16 --noise 100 --seed 4 --overwrite -q
fi
du -sh "$OUT/im1.zarr" "$OUT/im2.zarr" "$OUT/lab1.zarr"
echo "volumes: 3 × $N³ voxels = $((3 * N * N * N * 4 / 1048576)) MiB as f32 in the cache; budget 64 MiB"
for run in 1 2; do
  /usr/bin/time -f "%e s, peak RSS %M KiB" $D ddic "$OUT/im1.zarr" "$OUT/lab1.zarr" "$OUT/im2.zarr" -np 2 \
    --cache-bytes 64M --stats -od "$OUT" -pre run$run -q > "$OUT/run$run.log" 2> "$OUT/t$run.txt"
  grep -E "peak held|hits" "$OUT/t$run.txt" | head -2
  tail -1 "$OUT/t$run.txt"
done
grep -A9 returnStatus "$OUT/run1.log"

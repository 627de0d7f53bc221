#!/usr/bin/env bash
# ddic on touching grains: 105 uniform (untextured) spheres, radii 5-8, packed with no gap
# (`synth --grain-gap 0`: edges blend where grains touch), each moved up to 2 voxels, 100³
# uint16 TIFFs with noise σ = 100. spam-ddic (spam 0.9.1), dvc-stream ddic and dvc-stream
# ddic --keep-neighbour-edges (spam's mask) start from the same label pixel search (±4) and
# run with -np 2. Errors against the exact truth (bench/ddic_errors.py).
# Usage: bash bench/ddic_touching.sh [SEED]   (DVC=PATH: that binary, no build)
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${1:-4}
OUT=bench/out/ddic-touching-$SEED
mkdir -p "$OUT"
[ -n "${DVC:-}" ] || cargo build --release -q
D=${DVC:-./target/release/dvc-stream}
PY=.venv/bin/python
[ -x "$PY" ] || { python3 -m venv .venv; .venv/bin/pip install -q -r tests/python/requirements.txt; }
SPAM_DDIC=$(dirname "$PY")/spam-ddic
if [ ! -f "$OUT/lab1.tif" ]; then
  $D synth "$OUT" --grains 105 --shape 100 --grain-shape sphere --grain-fill uniform --grain-radius 5 8 \
    --grain-max-translation 2 --grain-max-rotation 0 --grain-gap 0 --noise 100 --dtype uint16 --format tiff \
    --seed "$SEED" --overwrite -q
fi
$D pixel-search "$OUT/im1.tif" "$OUT/im2.tif" -lab1 "$OUT/lab1.tif" -sr -4 4 -4 4 -4 4 -od "$OUT" -pre guess -q > /dev/null
T="/usr/bin/time -f %e"
$T "$SPAM_DDIC" "$OUT/im1.tif" "$OUT/lab1.tif" "$OUT/im2.tif" -np 2 -pf "$OUT/guess-pixelSearch.tsv" -od "$OUT" -pre spam \
  > "$OUT/spam.log" 2> "$OUT/t_spam.txt" || { cat "$OUT/t_spam.txt"; exit 1; }
$T $D ddic "$OUT/im1.tif" "$OUT/lab1.tif" "$OUT/im2.tif" -np 2 -pf "$OUT/guess-pixelSearch.tsv" -od "$OUT" -pre dvc -q \
  > /dev/null 2> "$OUT/t_dvc.txt"
$T $D ddic "$OUT/im1.tif" "$OUT/lab1.tif" "$OUT/im2.tif" -np 2 -pf "$OUT/guess-pixelSearch.tsv" -od "$OUT" -pre keep -q \
  --keep-neighbour-edges > /dev/null 2> "$OUT/t_keep.txt"
for run in spam:spam dvc:dvc-stream keep:spam-mask; do
  "$PY" bench/ddic_errors.py "$OUT/truth-grains.tsv" "$OUT/${run%%:*}-ddic.tsv" "${run#*:}" "$(tail -1 "$OUT/t_${run%%:*}.txt")"
done

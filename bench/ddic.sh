#!/usr/bin/env bash
# dvc-stream ddic against spam-ddic (spam 0.9.1, -np 2) on the same synthetic granular pair:
# textured ellipsoids (semi-axes 6-12 voxels), each moved by its own translation (≤ 5 voxels)
# and rotation (≤ 10°), uint16 TIFFs with noise. Both start from the same label pixel search
# (dvc-stream pixel-search -lab1, spam's label layout) and run with 2 processes/threads.
# Reports labels per second, the ratio, and the error of both against the exact truth.
# Usage: bash bench/ddic.sh [GRAINS] [SHAPE_Z SHAPE_Y SHAPE_X]  (errors: bench/ddic_errors.py)
set -euo pipefail
cd "$(dirname "$0")/.."
G=${1:-300}
SZ=${2:-180}; SY=${3:-200}; SX=${4:-220}
OUT=bench/out/ddic-$G
mkdir -p "$OUT"
cargo build --release -q
PY=.venv/bin/python
[ -x "$PY" ] || { python3 -m venv .venv; .venv/bin/pip install -q -r tests/python/requirements.txt; }
SPAM_DDIC=$(dirname "$PY")/spam-ddic
D=./target/release/dvc-stream
if [ ! -f "$OUT/lab1.tif" ]; then
  $D synth "$OUT" --grains "$G" --shape3 "$SZ" "$SY" "$SX" --grain-radius 6 12 --grain-max-translation 5 \
    --grain-max-rotation 10 --dtype uint16 --noise 100 --format tiff --seed 11 --overwrite -q
fi
$D pixel-search "$OUT/im1.tif" "$OUT/im2.tif" -lab1 "$OUT/lab1.tif" -sr -6 6 -6 6 -6 6 -od "$OUT" -pre guess -q > /dev/null
echo "== spam-ddic -np 2"
/usr/bin/time -f "%e s, peak RSS %M KiB" "$SPAM_DDIC" "$OUT/im1.tif" "$OUT/lab1.tif" "$OUT/im2.tif" -np 2 \
  -pf "$OUT/guess-pixelSearch.tsv" -od "$OUT" -pre spam > "$OUT/spam.log" 2> "$OUT/t_spam.txt" || { cat "$OUT/t_spam.txt"; exit 1; }
tail -1 "$OUT/t_spam.txt"
echo "== dvc-stream ddic -np 2"
/usr/bin/time -f "%e s, peak RSS %M KiB" $D ddic "$OUT/im1.tif" "$OUT/lab1.tif" "$OUT/im2.tif" -np 2 \
  -pf "$OUT/guess-pixelSearch.tsv" -od "$OUT" -pre dvc -q > "$OUT/dvc.log" 2> "$OUT/t_dvc.txt"
tail -1 "$OUT/t_dvc.txt"
"$PY" bench/ddic_errors.py "$OUT/truth-grains.tsv" "$OUT/spam-ddic.tsv" spam "$(tail -1 "$OUT/t_spam.txt" | cut -d" " -f1)"
"$PY" bench/ddic_errors.py "$OUT/truth-grains.tsv" "$OUT/dvc-ddic.tsv" dvc-stream "$(tail -1 "$OUT/t_dvc.txt" | cut -d" " -f1)"
"$PY" -c "import sys; print(f\"ratio: {float(sys.argv[1]) / float(sys.argv[2]):.1f}x\")" "$(tail -1 "$OUT/t_spam.txt" | cut -d" " -f1)" "$(tail -1 "$OUT/t_dvc.txt" | cut -d" " -f1)"

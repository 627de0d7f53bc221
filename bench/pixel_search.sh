#!/usr/bin/env bash
# dvc-stream pixel-search against spam-pixelSearch (spam 0.9.1, -np 2), side by side in one run.
#
# bash bench/pixel_search.sh [SIZE] [NS]   synthetic pair: SIZE³ uint16 TIFFs with noise, a
#   translation of (7, −12, 9) voxels, hws 10, search range ±15 on every axis, node spacing NS.
# bash bench/pixel_search.sh ct [NS] [SCAN] a real CT scan (spam's own snow.tif, 100³ uint16, or
#   SCAN = concrete for concrete_x-ray-bin16.tif) moved by the known shift (3.4, −5.3, 2.6)
#   voxels (cubic spline, scipy.ndimage.shift): hws 10 (21³ windows), range ±8, spacing NS (10).
#   EXTRA_DVC="..." runs a second dvc-stream binary (e.g. an earlier build) in the same run.
# Reports points per second, the ratio, and how many nodes each found at the exact integer
# displacement (the rounded truth).
set -euo pipefail
cd "$(dirname "$0")/.."
# DVC=PATH benchmarks that binary instead of building this tree's release binary.
[ -n "${DVC:-}" ] || cargo build --release -q
PY=.venv/bin/python
[ -x "$PY" ] || { python3 -m venv .venv; .venv/bin/pip install -q -r tests/python/requirements.txt; }
SPAM=$(dirname "$PY")/spam-pixelSearch
D=${DVC:-./target/release/dvc-stream}
if [ "${1:-}" = ct ]; then
  NS=${2:-10}
  SCAN=${3:-snow}
  OUT=bench/out/pixel-search-ct-$SCAN
  mkdir -p "$OUT"
  if [ ! -f "$OUT/im2.tif" ]; then
    "$PY" - "$OUT" "$SCAN" "$NS" <<'PYEOF'
import os, sys
import numpy as np, tifffile, spam, scipy.ndimage as ndi
out, scan, ns = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = os.path.join(os.path.dirname(spam.__file__), "data")
src = {"snow": "snow/snow.tif", "concrete": "concrete/concrete_x-ray-bin16.tif"}[scan]
im1 = tifffile.imread(os.path.join(data, src))
t = np.array([3.4, -5.3, 2.6])
# im2(x) = im1(x − t): every voxel moves by +t.
im2 = ndi.shift(im1.astype(np.float64), t, order=3, mode="nearest")
im2 = np.clip(np.round(im2), 0, np.iinfo(im1.dtype).max).astype(im1.dtype)
tifffile.imwrite(f"{out}/im1.tif", im1)
tifffile.imwrite(f"{out}/im2.tif", im2)
open(f"{out}/truth.txt", "w").write(" ".join(map(str, t)))
PYEOF
  fi
  SR="-8 8 -8 8 -8 8"
else
  N=${1:-200}
  NS=${2:-30}
  OUT=bench/out/pixel-search-$N
  mkdir -p "$OUT"
  if [ ! -f "$OUT/im2.tif" ]; then
    $D synth "$OUT" --shape "$N" --speckle 4 --dtype uint16 --format tiff --noise 100 \
      --translate 7 -12 9 --truth-ns "$NS" --overwrite -q
  fi
  SR="-15 15 -15 15 -15 15"
fi
echo "== spam-pixelSearch -np 2"
/usr/bin/time -f "%e s, peak RSS %M KiB" "$SPAM" "$OUT/im1.tif" "$OUT/im2.tif" -np 2 -hws 10 -ns "$NS" -sr $SR \
  -od "$OUT" -pre spam > "$OUT/spam.log" 2> "$OUT/t_spam.txt" || { cat "$OUT/t_spam.txt"; exit 1; }
tail -1 "$OUT/t_spam.txt"
RUNS="dvc=$D"
[ -n "${EXTRA_DVC:-}" ] && RUNS="$RUNS extra=$EXTRA_DVC"
for run in $RUNS; do
  name=${run%%=*}; bin=${run#*=}
  echo "== dvc-stream pixel-search -np 2 ($bin)"
  /usr/bin/time -f "%e s, peak RSS %M KiB" "$bin" pixel-search "$OUT/im1.tif" "$OUT/im2.tif" -np 2 -hws 10 -ns "$NS" -sr $SR \
    -od "$OUT" -pre "$name" -q > "$OUT/$name.log" 2> "$OUT/t_$name.txt"
  tail -1 "$OUT/t_$name.txt"
done
"$PY" - "$OUT" $RUNS <<'PYEOF'
import os, sys, pandas as pd, numpy as np
out, runs = sys.argv[1], [r.split("=")[0] for r in sys.argv[2:]]
secs = lambda f: float(open(f"{out}/{f}").read().strip().splitlines()[-1].split()[0])
cols = ["Zdisp", "Ydisp", "Xdisp"]
def truth(d):
    if os.path.exists(f"{out}/truth.tsv"):
        return np.round(pd.read_csv(f"{out}/truth.tsv", sep="\t")[cols].to_numpy())
    return np.tile(np.round([float(v) for v in open(f"{out}/truth.txt").read().split()]), (len(d), 1))
t_spam = secs("t_spam.txt")
for name in ["spam"] + runs:
    t = secs(f"t_{name}.txt")
    d = pd.read_csv(f"{out}/{name}-pixelSearch.tsv", sep="\t")
    exact = np.all(d[cols].to_numpy() == truth(d), axis=1)
    ratio = "" if name == "spam" else f"; {t_spam / t:.1f}x spam"
    print(f"{name:6s} {len(d)} points in {t:.2f} s: {len(d)/t:.1f} points/s; exact integer displacement at {exact.sum()}; "
          f"CC at those {d.pixelSearchCC[exact].min():.4f}..{d.pixelSearchCC[exact].max():.4f}{ratio}")
PYEOF

#!/usr/bin/env bash
# dvc-stream pixel-search against spam-pixelSearch (spam 0.9.1, -np 2) on the same synthetic
# pair: SIZE³ uint16 TIFFs with noise, a translation of (7, −12, 9) voxels, hws 10, search
# range ±15 on every axis, node spacing NS. Reports points per second, the ratio, and how
# many nodes each found at the exact integer displacement.
# Usage: bash bench/pixel_search.sh [SIZE] [NS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
NS=${2:-30}
OUT=bench/out/pixel-search-$N
mkdir -p "$OUT"
cargo build --release -q
PY=.venv/bin/python
[ -x "$PY" ] || { python3 -m venv .venv; .venv/bin/pip install -q -r tests/python/requirements.txt; }
SPAM=$(dirname "$PY")/spam-pixelSearch
D=./target/release/dvc-stream
if [ ! -f "$OUT/im2.tif" ]; then
  $D synth "$OUT" --shape "$N" --speckle 4 --dtype uint16 --format tiff --noise 100 \
    --translate 7 -12 9 --truth-ns "$NS" --overwrite -q
fi
SR="-15 15 -15 15 -15 15"
echo "== spam-pixelSearch -np 2"
/usr/bin/time -f "%e s, peak RSS %M KiB" "$SPAM" "$OUT/im1.tif" "$OUT/im2.tif" -np 2 -hws 10 -ns "$NS" -sr $SR \
  -od "$OUT" -pre spam > "$OUT/spam.log" 2> "$OUT/t_spam.txt" || { cat "$OUT/t_spam.txt"; exit 1; }
tail -1 "$OUT/t_spam.txt"
echo "== dvc-stream pixel-search -np 2"
/usr/bin/time -f "%e s, peak RSS %M KiB" $D pixel-search "$OUT/im1.tif" "$OUT/im2.tif" -np 2 -hws 10 -ns "$NS" -sr $SR \
  -od "$OUT" -pre dvc -q > "$OUT/dvc.log" 2> "$OUT/t_dvc.txt"
tail -1 "$OUT/t_dvc.txt"
"$PY" - "$OUT" <<'PYEOF'
import sys, pandas as pd, numpy as np
out = sys.argv[1]
secs = lambda f: float(open(f"{out}/{f}").read().strip().splitlines()[-1].split()[0])
t_spam, t_dvc = secs("t_spam.txt"), secs("t_dvc.txt")
truth = pd.read_csv(f"{out}/truth.tsv", sep="\t")
for name, t in (("spam", t_spam), ("dvc-stream", t_dvc)):
    d = pd.read_csv(f"{out}/{'spam' if name == 'spam' else 'dvc'}-pixelSearch.tsv", sep="\t")
    exact = np.all([d[c] == np.round(truth[c]) for c in ("Zdisp", "Ydisp", "Xdisp")], axis=0)
    print(f"{name:11s} {len(d)} points in {t:.1f} s: {len(d)/t:.1f} points/s; exact integer displacement at {exact.sum()}; "
          f"CC at those {d.pixelSearchCC[exact].min():.4f}..{d.pixelSearchCC[exact].max():.4f}")
print(f"ratio: {t_spam / t_dvc:.1f}x")
PYEOF

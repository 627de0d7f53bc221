#!/usr/bin/env bash
# pass-phi-field and filter-phi-field on a field of about 10⁶ points, against spam 0.9.1's
# spam-passPhiField and spam-filterPhiField in the same run (-np 2 for both). The field is a
# smooth analytic one on a 99³ grid (spacing 10) with 5 % of its points corrupted and flagged
# by their return status.
# Usage: bash bench/field_tools.sh [NODES_PER_AXIS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-99}
OUT=bench/out/field-tools-$N
mkdir -p "$OUT"
cargo build --release -q
PY=.venv/bin/python
[ -x "$PY" ] || { python3 -m venv .venv; .venv/bin/pip install -q -r tests/python/requirements.txt; }
BIN=$(dirname "$PY")
D=./target/release/dvc-stream
if [ ! -f "$OUT/field.tsv" ]; then
  "$PY" - "$OUT" "$N" <<'PYEOF'
import sys, numpy as np
out, n = sys.argv[1], int(sys.argv[2])
z, y, x = np.meshgrid(*(np.arange(1, n + 1) * 10.0,) * 3, indexing="ij")
pos = np.stack([z.ravel(), y.ravel(), x.ravel()], 1)
u = np.stack([0.01 * pos[:, 0] + 1e-5 * pos[:, 2] ** 2, -0.005 * pos[:, 1], 0.003 * pos[:, 0]], 1)
rng = np.random.default_rng(1)
bad = rng.random(len(pos)) < 0.05
u[bad] += rng.normal(0, 3, (bad.sum(), 3))
rows = np.zeros((len(pos), 21))
rows[:, 0] = np.arange(len(pos)); rows[:, 1:4] = pos
rows[:, [4, 9, 14]] = 1.0; rows[:, [7, 11, 15]] = u
rows[:, 16] = np.where(bad, 0.5, 0.999); rows[:, 17] = np.where(bad, -1, 2); rows[:, 18] = 1; rows[:, 19] = 1; rows[:, 20] = 1
hdr = "NodeNumber\tZpos\tYpos\tXpos\tFzz\tFzy\tFzx\tZdisp\tFyz\tFyy\tFyx\tYdisp\tFxz\tFxy\tFxx\tXdisp\tpixelSearchCC\treturnStatus\terror\tdeltaPhiNorm\titerations"
np.savetxt(f"{out}/field.tsv", rows, fmt="%.7f", delimiter="\t", header=hdr, comments="")
print(f"{len(pos)} points, {bad.sum()} corrupted")
PYEOF
fi
SHAPE=$(( (N + 1) * 10 ))
t() { /usr/bin/time -f "%e s, peak RSS %M KiB" "$@" > /dev/null 2>> "$OUT/times.txt"; tail -1 "$OUT/times.txt"; }
: > "$OUT/times.txt"
echo "== pass onto a grid of spacing 15, 8 nearest neighbours"
echo -n "spam-passPhiField:        "; t "$BIN/spam-passPhiField" -pf "$OUT/field.tsv" -ns 15 -im1shape $SHAPE $SHAPE $SHAPE -nn 8 -np 2 -od "$OUT" -pre spam
echo -n "dvc-stream pass-phi-field: "; t $D pass-phi-field -pf "$OUT/field.tsv" -ns 15 -im1shape $SHAPE $SHAPE $SHAPE -nn 8 -np 2 -od "$OUT" -pre dvc -q
echo "== filter: select by status, correct by interpolation of 8 neighbours"
echo -n "spam-filterPhiField:        "; t "$BIN/spam-filterPhiField" -pf "$OUT/field.tsv" -srs -cint -nn 8 -np 2 -od "$OUT" -pre spam
echo -n "dvc-stream filter-phi-field: "; t $D filter-phi-field -pf "$OUT/field.tsv" -srs -cint -nn 8 -np 2 -od "$OUT" -pre dvc -q
"$PY" - "$OUT" <<'PYEOF'
import sys
out = sys.argv[1]
s = [float(l.split()[0]) for l in open(f"{out}/times.txt") if l.strip() and l.split()[0][0].isdigit()]
print(f"pass: {s[0]:.1f} s vs {s[1]:.1f} s ({s[0]/s[1]:.0f}x); filter: {s[2]:.1f} s vs {s[3]:.1f} s ({s[2]/s[3]:.0f}x)")
PYEOF

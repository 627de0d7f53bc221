#!/usr/bin/env bash
# dvc-stream ddic against spam-ddic (spam 0.9.1, -np 2) on the same synthetic granular pair:
# textured ellipsoids (semi-axes 6-12 voxels), each moved by its own translation (≤ 5 voxels)
# and rotation (≤ 10°), uint16 TIFFs with noise. Both start from the same label pixel search
# (dvc-stream pixel-search -lab1, spam's label layout) and run with 2 processes/threads.
# Reports labels per second, the ratio, and the error of both against the exact truth.
# Usage: bash bench/ddic.sh [GRAINS] [SHAPE_Z SHAPE_Y SHAPE_X]
set -euo pipefail
cd "$(dirname "$0")/.."
G=${1:-400}
SZ=${2:-160}; SY=${3:-200}; SX=${4:-220}
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
"$PY" - "$OUT" <<'PYEOF'
import sys, pandas as pd, numpy as np
out = sys.argv[1]
secs = lambda f: float(open(f"{out}/{f}").read().strip().splitlines()[-1].split()[0])
t_spam, t_dvc = secs("t_spam.txt"), secs("t_dvc.txt")
truth = pd.read_csv(f"{out}/truth-grains.tsv", sep="\t")
F = lambda d: d[["Fzz", "Fzy", "Fzx", "Fyz", "Fyy", "Fyx", "Fxz", "Fxy", "Fxx"]].to_numpy().reshape(-1, 3, 3)
def errors(d):
    d, tr = d.iloc[1:], truth.iloc[1:]
    p, c = d[["Zpos", "Ypos", "Xpos"]].to_numpy(), tr[["Zpos", "Ypos", "Xpos"]].to_numpy()
    ft = F(tr)
    t_true = tr[["Zdisp", "Ydisp", "Xdisp"]].to_numpy() + np.einsum("nij,nj->ni", ft - np.eye(3), p - c)
    et = np.abs(d[["Zdisp", "Ydisp", "Xdisp"]].to_numpy() - t_true).max(axis=1)
    r = np.einsum("nij,nkj->nik", F(d), ft)
    er = np.degrees(np.arccos(np.clip((np.trace(r, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    return et, er
n = len(truth) - 1
for name, t in (("spam", t_spam), ("dvc-stream", t_dvc)):
    d = pd.read_csv(f"{out}/{'spam' if name == 'spam' else 'dvc'}-ddic.tsv", sep="\t")
    ok = (d.returnStatus == 2).to_numpy()[1:]
    et, er = errors(d)
    print(f"{name:11s} {n} labels in {t:.1f} s: {n/t:.1f} labels/s, {n/t/2:.1f} labels/s/core; converged {ok.sum()}; "
          f"translation error (converged) median {np.median(et[ok]):.4f}, max {et[ok].max():.4f} voxel; "
          f"rotation error median {np.median(er[ok]):.3f}, max {er[ok].max():.3f} deg")
print(f"ratio: {t_spam / t_dvc:.1f}x")
PYEOF

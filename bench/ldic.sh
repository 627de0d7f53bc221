#!/usr/bin/env bash
# dvc-stream ldic against spam-ldic (spam 0.9.1, -np 2) on the same synthetic pair: 200³
# uint16 TIFFs with noise, hws 10, ns 10, a guess from dvc-stream reg. Reports points per
# second, the ratio, points per second per core, voxel-iterations per second and the error of
# both against the exact truth.
# Usage: bash bench/ldic.sh [SIZE]
#   OLD_BIN=path/to/dvc-stream   also run an older release binary on the same pair, in the same
#                                run (for refactors that must not change speed: issue 16)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
OUT=bench/out/ldic-$N
mkdir -p "$OUT"
cargo build --release -q
PY=.venv/bin/python
[ -x "$PY" ] || { python3 -m venv .venv; .venv/bin/pip install -q -r tests/python/requirements.txt; }
SPAM_LDIC=$(dirname "$PY")/spam-ldic
D=./target/release/dvc-stream
if [ ! -f "$OUT/im2.tif" ]; then
  $D synth "$OUT" --shape "$N" --speckle 4 --dtype uint16 --format tiff --noise 100 \
    --translate 1.3 -2.7 0.4 --rotate 1 0.5 0 --zoom 1.005 1.005 1.005 --truth-ns 10 --overwrite -q
fi
$D reg "$OUT/im1.tif" "$OUT/im2.tif" -bb 4 -od "$OUT" -pre guess -q > /dev/null
echo "== spam-ldic -np 2"
/usr/bin/time -f "%e s, peak RSS %M KiB" "$SPAM_LDIC" "$OUT/im1.tif" "$OUT/im2.tif" -np 2 -hws 10 -ns 10 \
  -pf "$OUT/guess-registration.tsv" -od "$OUT" -pre spam > "$OUT/spam.log" 2> "$OUT/t_spam.txt" || { cat "$OUT/t_spam.txt"; exit 1; }
tail -1 "$OUT/t_spam.txt"
echo "== dvc-stream ldic -np 2"
/usr/bin/time -f "%e s, peak RSS %M KiB" $D ldic "$OUT/im1.tif" "$OUT/im2.tif" -o 1 -np 2 -hws 10 -ns 10 \
  -pf "$OUT/guess-registration.tsv" -od "$OUT" -pre dvc -q > "$OUT/dvc.log" 2> "$OUT/t_dvc.txt"
tail -1 "$OUT/t_dvc.txt"
if [ -n "${OLD_BIN:-}" ]; then
  echo "== $OLD_BIN ldic -np 2 (the older binary)"
  /usr/bin/time -f "%e s, peak RSS %M KiB" "$OLD_BIN" ldic "$OUT/im1.tif" "$OUT/im2.tif" -o 1 -np 2 -hws 10 -ns 10 \
    -pf "$OUT/guess-registration.tsv" -od "$OUT" -pre old -q > "$OUT/old.log" 2> "$OUT/t_old.txt"
  tail -1 "$OUT/t_old.txt"
  # The new binary again after the old, so that a drift of the machine's load shows.
  /usr/bin/time -f "%e s, peak RSS %M KiB" $D ldic "$OUT/im1.tif" "$OUT/im2.tif" -o 1 -np 2 -hws 10 -ns 10 \
    -pf "$OUT/guess-registration.tsv" -od "$OUT" -pre dvc -q > "$OUT/dvc.log" 2> "$OUT/t_dvc2.txt"
  tail -1 "$OUT/t_dvc2.txt"
fi
"$PY" - "$OUT" <<'PYEOF'
import sys, pandas as pd, numpy as np
out = sys.argv[1]
t_spam = float(open(f"{out}/t_spam.txt").read().split()[-6]) if False else float(open(f"{out}/t_spam.txt").read().strip().splitlines()[-1].split()[0])
t_dvc = float(open(f"{out}/t_dvc.txt").read().strip().splitlines()[-1].split()[0])
truth = pd.read_csv(f"{out}/truth.tsv", sep="\t")
for name, t in (("spam", t_spam), ("dvc-stream", t_dvc)):
    d = pd.read_csv(f"{out}/{name if name == 'spam' else 'dvc'}-ldic.tsv", sep="\t")
    ok = d.returnStatus == 2
    err = np.sqrt(sum((d[c] - truth[c]) ** 2 for c in ("Zdisp", "Ydisp", "Xdisp")))[ok]
    vox_it = (d.iterations[ok] * 19 ** 3).sum()
    print(f"{name:11s} {len(d)} points in {t:.1f} s: {len(d)/t:.0f} points/s, {len(d)/t/2:.0f} points/s/core, "
          f"{vox_it/t/1e6:.1f} M voxel-iterations/s; converged {ok.sum()}; |u − truth| mean {err.mean():.4f}, max {err.max():.4f} voxel")
print(f"ratio: {t_spam / t_dvc:.1f}x")
import os
if os.path.exists(f"{out}/t_old.txt") and os.environ.get("OLD_BIN"):
    t_old = float(open(f"{out}/t_old.txt").read().strip().splitlines()[-1].split()[0])
    t_new2 = float(open(f"{out}/t_dvc2.txt").read().strip().splitlines()[-1].split()[0])
    same = (pd.read_csv(f"{out}/old-ldic.tsv", sep="\t").equals(pd.read_csv(f"{out}/dvc-ldic.tsv", sep="\t")))
    print(f"older binary: {t_old:.1f} s; new binary {t_dvc:.1f} s and {t_new2:.1f} s (new/old {(t_dvc + t_new2) / 2 / t_old:.2f}); tables equal: {same}")
PYEOF

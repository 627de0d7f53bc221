#!/usr/bin/env bash
# Accuracy of spam 0.9.1's shift-DVC (-shift) against plain trilinear (-o 1) and cubic (-o 3):
# ldic on exact synthetic pairs (80³ speckle 5, no noise) moved by the same sub-voxel
# translation s on every axis, hws 10, ns 10, the 125 interior nodes; bias = mean of
# (result − truth) over nodes and axes, sd = its spread (pooled over the three axes); and reg
# (bin 1) on the same pairs. Accuracy does not depend on the build profile: the debug binary
# is used unless DVC is set.
# Usage: bash bench/shift.sh [SHIFTS...]   (default 0.0 0.1 0.25 0.3 0.5), after `cargo build`.
# The points/s column is ldic's own rate (its summary line), for comparing modes within a run.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DVC:-./target/debug/dvc-stream}
OUT=bench/out/shift
mkdir -p "$OUT"
SHIFTS=${*:-0.0 0.1 0.25 0.3 0.5}
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
printf "| s (voxel) | mode | ldic bias | ldic sd | ldic rms | mean iterations | reg error (max axis) | ldic points/s |\n|---|---|---|---|---|---|---|---|\n"
for t in $SHIFTS; do
  P="$OUT/s$t"
  [ -f "$P/truth.parquet" ] || $D synth "$P" --shape 80 --speckle 5 --translate "$t" "$t" "$t" --truth-ns 10 --overwrite -q
  for mode in "o1:-o 1" "o1-shift:-o 1 -shift" "o3:-o 3" "o3-shift:-o 3 -shift"; do
    name=${mode%%:*}; flags=${mode#*:}
    # shellcheck disable=SC2086
    summary=$($D ldic "$P/im1.zarr" "$P/im2.zarr" -ns 10 -hws 10 $flags -od "$P" -pre "$name" -q 2>&1 > /dev/null | tail -1)
    rate=$(sed -n 's/.*(\([0-9]*\) points\/s.*/\1/p' <<< "$summary")
    # shellcheck disable=SC2086
    $D reg "$P/im1.zarr" "$P/im2.zarr" -bb 1 -be 1 $flags -od "$P" -pre "reg-$name" -q > /dev/null 2>&1
    "$PY" - "$P" "$name" "$t" "$rate" <<'PYEOF'
import sys, csv, math
p, name, t, rate = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
def read(f):
    with open(f) as h:
        return list(csv.DictReader(h, delimiter="\t"))
rows = read(f"{p}/{name}-ldic.tsv")
e, its = [], []
for r in rows:
    if all(20 <= float(r[k]) <= 60 for k in ("Zpos", "Ypos", "Xpos")):
        its.append(float(r["iterations"]))
        for k in ("Zdisp", "Ydisp", "Xdisp"):
            e.append(float(r[k]) - t)
n = len(e)
mean = sum(e) / n
sd = math.sqrt(sum((v - mean) ** 2 for v in e) / n)
rms = math.sqrt(sum(v * v for v in e) / n)
reg = read(f"{p}/reg-{name}-registration.tsv")[0]
re = max(abs(float(reg[k]) - t) for k in ("Zdisp", "Ydisp", "Xdisp"))
print(f"| {t} | {name.replace('o1', '-o 1').replace('o3', '-o 3').replace('-shift', ' -shift')} | {mean:+.5f} | {sd:.5f} | {rms:.5f} | {sum(its)/len(its):.2f} | {re:.5f} | {rate} |")
PYEOF
  done
done

#!/usr/bin/env bash
# Sharded ldic: the same run as 1 process and as N processes under mpirun (1 worker thread
# each), on a synthetic uint16 Zarr pair in 32³ chunks. Reports wall time, CPU time per point
# and the bytes each shard read (its chunk traffic, halo included), and checks that the merged
# table equals the single-process one.
# Usage: bash bench/shards.sh [SIZE] [N]   (needs mpirun: Debian's openmpi-bin)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-256}
N=${2:-2}
OUT=bench/out/shards-$SIZE
mkdir -p "$OUT"
cargo build --release -q
D=$PWD/target/release/dvc-stream
if [ ! -d "$OUT/s/im2.zarr" ]; then
  $D synth "$OUT/s" --shape "$SIZE" --chunk 32 --speckle 4 --dtype uint16 --noise 100 \
    --translate 1.3 -2.7 0.4 --rotate 1 0.5 0 --overwrite -q
fi
ARGS=("$OUT/s/im1.zarr" "$OUT/s/im2.zarr" -o 1 -hws 10 -ns 10 -pf "$OUT/s/truth-registration.tsv" -pre r -np 1 --stats)
rm -rf "$OUT/one" "$OUT/many"
echo "== 1 process, 1 thread"
/usr/bin/time -f "%e s wall, %U s user" $D ldic "${ARGS[@]}" -od "$OUT/one" > "$OUT/one.log" 2> "$OUT/one.err"
grep -E "chunk cache|s wall" "$OUT/one.err"
echo "== mpirun -n $N, 1 thread each"
/usr/bin/time -f "%e s wall, %U s user" mpirun --allow-run-as-root --oversubscribe -n "$N" $D ldic "${ARGS[@]}" -od "$OUT/many" > "$OUT/many.log" 2> "$OUT/many.err"
grep -E "chunk cache|s wall" "$OUT/many.err"
$D merge "$OUT/many/r-ldic.parts" > /dev/null 2>&1
cmp "$OUT/one/r-ldic.tsv" "$OUT/many/r-ldic.tsv" && echo "merged table identical to the single-process one"
POINTS=$(($(wc -l < "$OUT/one/r-ldic.tsv") - 1))
python3 - "$OUT" "$POINTS" "$N" <<'PYEOF'
import sys, re
out, points, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def times(f):
    w, u = re.findall(r"([\d.]+) s wall, ([\d.]+) s user", open(f).read())[-1]
    return float(w), float(u)
def mib(f):
    return [float(x) for x in re.findall(r"([\d.]+) MiB read", open(f).read())]
w1, u1 = times(f"{out}/one.err"); wn, un = times(f"{out}/many.err")
r1, rn = mib(f"{out}/one.err"), mib(f"{out}/many.err")
print(f"{points} points; 1 process: {w1:.2f} s wall, {u1 / points * 1e3:.3f} ms CPU/point, read {sum(r1):.0f} MiB")
print(f"{n} processes: {wn:.2f} s wall ({w1 / wn:.2f}x), {un / points * 1e3:.3f} ms CPU/point ({un / u1:.2f}x), "
      f"read {' + '.join(f'{v:.0f}' for v in rn)} = {sum(rn):.0f} MiB ({sum(rn) / sum(r1):.2f}x the single run's chunk traffic)")
PYEOF

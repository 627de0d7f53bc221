#!/usr/bin/env bash
# Every chunk once, out of core: a synthetic uint16 N³ pair (default 2048³, 128³ chunks, zstd:1),
# made by synth slab by slab, then ldic on a sparse grid (-ns 100) and a dense one (-ns 20, the
# whole volume), and pixel-search and ddic on a sparse granular label set of the same size.
# For each run: chunks decoded / distinct chunks touched (--stats), bytes read by the process /
# store size, wall time against the time to read and decompress the touched chunks once
# (dvc-stream stats over the same stores, in the same run, scaled by the chunks touched), and
# peak RSS against the cache budget. The generated data are deleted at the end.
#
# Usage: bash bench/huge.sh [N] [CHUNK]      e.g. bash bench/huge.sh 1024
#   DVC_BIN=target/debug  use an existing build instead of `cargo build --release`
#   HUGE_DIR=...          where the stores go (default bench/out/huge-N; needs ~4 N³ bytes free)
#   BUDGET=1G DENSE_BUDGET=2G LABEL_BUDGET=1G   --cache-bytes of the sparse, dense and label runs
#   LOW_BUDGET=1G   with BUDGET set above it, the sparse run is made a second time with this
#                   smaller budget (below "once" at 2048³: it shows the warning and the cost)
#   KEEP_DATA=1     keep the generated stores (a pair already in HUGE_DIR is reused, not remade)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2048}
C=${2:-128}
if [ -z "${DVC_BIN:-}" ]; then
  cargo build --release -q
  DVC_BIN=target/release
fi
D=$DVC_BIN/dvc-stream
OUT=${HUGE_DIR:-bench/out/huge-$N}
BUDGET=${BUDGET:-1G}
DENSE_BUDGET=${DENSE_BUDGET:-2G}
LABEL_BUDGET=${LABEL_BUDGET:-1G}
mkdir -p "$OUT"
TABLE="$OUT/table.md"
TIME="/usr/bin/time -f %e:%M"

# The --stats line of a log: decoded distinct read-from-files(bytes) budget-for-once
stat_fields() {
  python3 - "$1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
line = [l for l in t.splitlines() if l.startswith("chunk cache:")][-1]
units = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
def size(pat):
    m = re.search(r"([0-9.]+) (B|KiB|MiB|GiB|TiB)" + pat, line)
    return int(float(m.group(1)) * units[m.group(2)]) if m else 0
dec = re.search(r"(\d+) chunks decoded of (\d+) distinct", line)
once = re.search(r"budget to decode each chunk once ([0-9.]+) (B|KiB|MiB|GiB|TiB)", line)
once = int(float(once.group(1)) * units[once.group(2)]) if once else 0
print(dec.group(1), dec.group(2), size(" read from files"), once)
PY
}
gib() { python3 -c "import sys; print(f'{int(sys.argv[1]) / 2**30:.2f} GiB')" "$1"; }
store_bytes() { du -scb "$@" | tail -1 | cut -f1; }

# Time to read and decompress every chunk of the stores once, and how many chunks they hold.
read_once() {
  local secs=0 chunks=0
  for s in "$@"; do
    $TIME -o "$OUT/stats.time" $D stats "$s" --number-of-processes 2 --cache-bytes 256M --stats -q > /dev/null 2> "$OUT/stats.log"
    secs=$(python3 -c "print($secs + float(open('$OUT/stats.time').read().split(':')[0]))")
    chunks=$((chunks + $(stat_fields "$OUT/stats.log" | cut -d' ' -f2)))
  done
  echo "$secs $chunks"
}

# run NAME BUDGET STORES... -- COMMAND...: one row of the table.
row() {
  local title=$1 budget=$2; shift 2
  local name=${title// /_}
  local stores=()
  while [ "$1" != "--" ]; do stores+=("$1"); shift; done
  shift
  echo "== $title: $*" >&2
  $TIME -o "$OUT/$name.time" "$@" --cache-bytes "$budget" --stats -np 2 -q > "$OUT/$name.out" 2> "$OUT/$name.log" \
    || { cat "$OUT/$name.log" >&2; exit 1; }
  grep -E "^warning|chunk cache" "$OUT/$name.log" >&2 || true
  read -r dec distinct rchar once < <(stat_fields "$OUT/$name.log")
  read -r once_secs all_chunks < <(read_once "${stores[@]}")
  local wall rss size
  wall=$(cut -d: -f1 "$OUT/$name.time")
  rss=$(cut -d: -f2 "$OUT/$name.time")
  size=$(store_bytes "${stores[@]}")
  python3 - "$title" "$dec" "$distinct" "$rchar" "$size" "$wall" "$once_secs" "$all_chunks" "$rss" "$budget" "$once" >> "$TABLE" <<'PY'
import sys
name, dec, distinct, rchar, size, wall, once_s, allc, rss, budget, once = sys.argv[1:]
dec, distinct, rchar, size, allc, rss, once = map(int, (dec, distinct, rchar, size, allc, rss, once))
wall, once_s = float(wall), float(once_s)
touched_s = once_s * distinct / allc
print(f"| {name} | {dec} / {distinct} ({dec / distinct:.2f}) | {rchar / 2**30:.2f} / {size / 2**30:.2f} GiB | "
      f"{wall:.1f} s / {touched_s:.1f} s ({wall / touched_s:.2f}) | {rss / 2**20:.2f} GiB / {budget} (once: {once / 2**30:.2f} GiB) |")
PY
  tail -1 "$TABLE" >&2
}

echo "| run | chunks decoded / touched | read by the process / stores | wall / read+decode touched once | peak RSS / --cache-bytes |" > "$TABLE"
echo "|---|---|---|---|---|" >> "$TABLE"

P="$OUT/pair"
if [ ! -f "$P/im2.zarr/zarr.json" ]; then
  echo "== synth ${N}³ pair" >&2
  $TIME -o "$OUT/synth.time" $D synth "$P" --shape "$N" --dtype uint16 --speckle 4 --translate 1.5 -0.5 2 \
    --chunk "$C" --levels 1 --truth-ns 100 --overwrite -q
  echo "synth pair: $(cut -d: -f1 "$OUT/synth.time") s, peak RSS $(cut -d: -f2 "$OUT/synth.time") KiB" >&2
fi
if [ -n "${LOW_BUDGET:-}" ]; then
  row "ldic -ns 100 at $LOW_BUDGET" "$LOW_BUDGET" "$P/im1.zarr" "$P/im2.zarr" -- $D ldic "$P/im1.zarr" "$P/im2.zarr" -o 1 -hws 10 -ns 100 -od "$OUT" -pre sparse-low
fi
row "ldic -ns 100" "$BUDGET" "$P/im1.zarr" "$P/im2.zarr" -- $D ldic "$P/im1.zarr" "$P/im2.zarr" -o 1 -hws 10 -ns 100 -od "$OUT" -pre sparse
row "ldic -ns 20" "$DENSE_BUDGET" "$P/im1.zarr" "$P/im2.zarr" -- $D ldic "$P/im1.zarr" "$P/im2.zarr" -o 1 -hws 10 -ns 20 -od "$OUT" -pre dense --no-tsv
[ -n "${KEEP_DATA:-}" ] || rm -rf "$P"

G="$OUT/grains"
if [ ! -f "$G/im2.zarr/zarr.json" ]; then
  echo "== synth ${N}³ granular pair" >&2
  $TIME -o "$OUT/synth.time" $D synth "$G" --grains $((N / 8)) --shape "$N" --grain-radius 12 24 --grain-max-translation 3 \
    --grain-max-rotation 3 --dtype uint16 --chunk "$C" --levels 1 --overwrite -q
  echo "synth grains: $(cut -d: -f1 "$OUT/synth.time") s, peak RSS $(cut -d: -f2 "$OUT/synth.time") KiB" >&2
fi
row "pixel-search -lab1" "$LABEL_BUDGET" "$G/im1.zarr" "$G/lab1.zarr" "$G/im2.zarr" -- $D pixel-search "$G/im1.zarr" "$G/im2.zarr" -lab1 "$G/lab1.zarr" -sr -4 4 -4 4 -4 4 -od "$OUT" -pre guess
row "ddic" "$LABEL_BUDGET" "$G/im1.zarr" "$G/lab1.zarr" "$G/im2.zarr" -- $D ddic "$G/im1.zarr" "$G/lab1.zarr" "$G/im2.zarr" -pf "$OUT/guess-pixelSearch.tsv" -od "$OUT" -pre labels --no-vtk
[ -n "${KEEP_DATA:-}" ] || rm -rf "$G"
cat "$TABLE"

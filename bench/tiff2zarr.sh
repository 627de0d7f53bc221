#!/usr/bin/env bash
# tiff2zarr against tifffile + zarr-python on the same ≥1 GiB uint16 stack, same chunks
# (64³) and codec (zstd level 1), same 2 cores, plus the disk's own write speed (dd).
# Usage: bash bench/tiff2zarr.sh [Z] [Y] [X]   (default 512 1024 1024 = 1 GiB)
set -euo pipefail
cd "$(dirname "$0")/.."
Z=${1:-512}; Y=${2:-1024}; X=${3:-1024}
OUT=bench/out
mkdir -p "$OUT"
cargo build --release --workspace -q
PY=.venv/bin/python
[ -x "$PY" ] || { python3 -m venv .venv; .venv/bin/pip install -q -r tests/python/requirements.txt; }
STACK="$OUT/stack-${Z}x${Y}x${X}.tif"
if [ ! -f "$STACK" ]; then
  echo "making $STACK (smooth random structure + noise, uint16, like a CT scan)"
  "$PY" - "$STACK" "$Z" "$Y" "$X" <<'PYEOF'
import sys, numpy as np, tifffile
path, z, y, x = sys.argv[1], *map(int, sys.argv[2:5])
rng = np.random.default_rng(0)
coarse = rng.integers(10000, 40000, (z // 4 + 1, y // 4 + 1, x // 4 + 1), dtype=np.uint16)
with tifffile.TiffWriter(path, bigtiff=True) as tw:
    for k in range(z):
        plane = np.repeat(np.repeat(coarse[k // 4], 4, 0), 4, 1)[:y, :x]
        noise = rng.integers(0, 400, (y, x), dtype=np.uint16)
        tw.write(plane + noise, contiguous=True)
PYEOF
fi
BYTES=$(stat -c %s "$STACK")
sync
echo "== disk write speed (dd, 1 GiB, fdatasync)"
DD=$( { dd if=/dev/zero of="$OUT/dd.bin" bs=1M count=1024 conv=fdatasync 2>&1 >/dev/null; } | tail -1)
rm -f "$OUT/dd.bin"
echo "$DD"
echo "== tiff2zarr (level 0 only, like the baseline)"
rm -rf "$OUT/a.zarr"
sync
/usr/bin/time -f "%e s, peak RSS %M KiB" ./target/release/tiff2zarr "$STACK" "$OUT/a.zarr" --chunk 64 --codec zstd:1 --levels 1 -q 2> "$OUT/t_dvc.txt"
sync
cat "$OUT/t_dvc.txt"
echo "== tiff2zarr (default pyramid)"
rm -rf "$OUT/p.zarr"
/usr/bin/time -f "%e s, peak RSS %M KiB" ./target/release/tiff2zarr "$STACK" "$OUT/p.zarr" --chunk 64 --codec zstd:1 -q 2> "$OUT/t_dvcp.txt"
cat "$OUT/t_dvcp.txt"
echo "== tifffile + zarr-python (2 threads), then sync: on disk like tiff2zarr's output"
rm -rf "$OUT/b.zarr"
sync
/usr/bin/time -f "%e s, peak RSS %M KiB" sh -c "'$PY' bench/tiff2zarr_baseline.py '$STACK' '$OUT/b.zarr' && sync" 2> "$OUT/t_py.txt"
cat "$OUT/t_py.txt"
echo "== both again without waiting for the disk (output on tmpfs /dev/shm)"
rm -rf /dev/shm/dvc-bench-a.zarr /dev/shm/dvc-bench-b.zarr
/usr/bin/time -f "%e s, peak RSS %M KiB" ./target/release/tiff2zarr "$STACK" /dev/shm/dvc-bench-a.zarr --chunk 64 --codec zstd:1 --levels 1 -q 2> "$OUT/t_dvc_shm.txt"
/usr/bin/time -f "%e s, peak RSS %M KiB" "$PY" bench/tiff2zarr_baseline.py "$STACK" /dev/shm/dvc-bench-b.zarr 2> "$OUT/t_py_shm.txt"
echo "tiff2zarr: $(cat "$OUT/t_dvc_shm.txt")"; echo "baseline:  $(cat "$OUT/t_py_shm.txt")"
rm -rf /dev/shm/dvc-bench-a.zarr /dev/shm/dvc-bench-b.zarr
"$PY" - "$STACK" "$OUT/a.zarr" "$OUT/b.zarr" <<'PYEOF'
import sys, zarr, tifffile, numpy as np
a = zarr.open_group(sys.argv[2], mode="r")["0"]
b = zarr.open_array(sys.argv[3], mode="r")
for z in range(0, a.shape[0], 64):
    assert np.array_equal(a[z:z+64], b[z:z+64]), "outputs differ"
print("outputs identical")
PYEOF
python3 - "$BYTES" "$OUT/t_dvc.txt" "$OUT/t_dvcp.txt" "$OUT/t_py.txt" "$OUT/t_dvc_shm.txt" "$OUT/t_py_shm.txt" "$DD" <<'PYEOF'
import sys
b = int(sys.argv[1]) / 1e6
t = [float(open(f).read().split()[0]) for f in sys.argv[2:7]]
print(f"stack: {b:.0f} MB")
print(f"to disk, flushed: tiff2zarr level 0 {b/t[0]:.0f} MB/s, with pyramid {b/t[1]:.0f} MB/s; tifffile+zarr-python {b/t[2]:.0f} MB/s; ratio {t[2]/t[0]:.2f}x")
print(f"to tmpfs: tiff2zarr {b/t[3]:.0f} MB/s; tifffile+zarr-python {b/t[4]:.0f} MB/s; ratio {t[4]/t[3]:.2f}x")
print(f"disk (dd): {sys.argv[7]}")
PYEOF

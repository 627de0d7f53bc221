#!/usr/bin/env bash
# dvc-stream ldic against OpenCorr (FFT-CC integer start, then IC-GN on the 12-parameter affine
# shape function with a tricubic B-spline and ZNSSD) and spam-ldic, in one run, 2 threads each, on
# the same uint16 voxels and the same interior points:
#   - speckle: a 200³ band-limited speckle moved by a Fourier shift (an exact sub-voxel
#     translation of the same band-limited function), grey noise σ = NOISE added to both images;
#   - snow: spam's real CT scan (100³ uint16) moved by a Fourier shift of its mirror extension.
# Windows of 21³ and 33³ (-hws 10 and 16). dvc-stream starts every point from the rounded truth
# (what an integer FFT-CC start gives), given as a field on its grid with NaN (skipped, status −7)
# outside the interior points; OpenCorr runs its own FFT-CC, and its IC-GN stage alone is also
# reported. Reports points/s, rms of |u − truth| (voxel), mean iterations and peak RSS.
# The machine is shared: compare numbers within one run only.
#
# Usage: OPENCORR_DIR=/path/to/opencorr bash bench/peers.sh [--no-spam]
#   OPENCORR_DIR: the folder with OpenCorr's build.sh, opencorr_dvc.cpp and upstream/ (the
#   benchmark peers' copy of OpenCorr); it is built into bench/out/opencorr_dvc.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${OPENCORR_DIR:-}" ] || [ ! -f "${OPENCORR_DIR}/build.sh" ] || [ ! -f "${OPENCORR_DIR}/opencorr_dvc.cpp" ]; then
  echo "bench/peers.sh: set OPENCORR_DIR to the folder holding OpenCorr's build.sh and opencorr_dvc.cpp (got '${OPENCORR_DIR:-unset}')" >&2
  exit 2
fi
SPAM=1
[ "${1:-}" = "--no-spam" ] && SPAM=0
NOISE=${NOISE:-50}
OUT=bench/out/peers
mkdir -p "$OUT"
cargo build --release -q
OC=bench/out/opencorr_dvc
if [ ! -x "$OC" ] || [ -n "$(find "$OPENCORR_DIR" -newer "$OC" -name '*.c*' -print -quit)" ]; then
  bash "$OPENCORR_DIR/build.sh" "$OC" > "$OUT/opencorr_build.log" 2>&1 || { cat "$OUT/opencorr_build.log"; exit 1; }
fi
PY=.venv/bin/python
[ -x "$PY" ] || { echo "bench/peers.sh: needs the repository's .venv with spam (see README)" >&2; exit 2; }
D=./target/release/dvc-stream
SPAM_LDIC=$(dirname "$PY")/spam-ldic
# Pairs, points and guesses. Grid: spam's makeGrid, which dvc-stream ldic reproduces.
"$PY" - "$OUT" "$NOISE" <<'PYEOF'
import os, sys, numpy as np, tifffile, spam, spam.DIC
out, noise = sys.argv[1], float(sys.argv[2])
rng = np.random.default_rng(17)

def fourier_shift(im, t, mirror):
    """im moved by t (Z, Y, X): im2(x) = im(x − t), exact for a periodic band-limited image
    without a Nyquist component; with `mirror`, through the image's mirror extension to an
    odd length 2N − 1 (continuous when periodised, so no wrap-around edge, and no Nyquist bin,
    whose shift a real image cannot hold)."""
    n = im.shape
    ext = np.pad(im, [(0, s - 1) for s in n], mode="symmetric") if mirror else im
    f = np.fft.rfftn(ext)
    for a, s in enumerate(ext.shape):
        k = np.fft.rfftfreq(s) if a == 2 else np.fft.fftfreq(s)
        shape = [1, 1, 1]; shape[a] = len(k)
        f *= np.exp(-2j * np.pi * k * t[a]).reshape(shape)
    return np.fft.irfftn(f, ext.shape, axes=(0, 1, 2))[: n[0], : n[1], : n[2]]

def speckle(n):
    """Band-limited speckle: white noise low-passed by a Gaussian (σ ≈ 1.2 voxel), periodic."""
    f = np.fft.rfftn(rng.standard_normal((n, n, n)))
    k, kr = np.fft.fftfreq(n), np.fft.rfftfreq(n)
    k2 = k.reshape(n, 1, 1) ** 2 + k.reshape(1, n, 1) ** 2 + kr.reshape(1, 1, -1) ** 2
    f *= np.exp(-2 * np.pi**2 * 1.2**2 * k2)
    # No Nyquist component (its shift would not be real): the shift below is then exact.
    f[n // 2], f[:, n // 2], f[:, :, -1] = 0, 0, 0
    im = np.fft.irfftn(f, (n, n, n), axes=(0, 1, 2))
    im = (im - im.mean()) / im.std()
    return 30000 + 5000 * im  # 6σ above 0: OpenCorr takes a negative sample for "out of range"

def quantise(im):
    return np.clip(np.round(im + rng.normal(0, noise, im.shape)), 1, 65535).astype(np.uint16)

cases = {}
t_speckle = np.array([0.37, -1.62, 2.21])
s1 = speckle(200)
cases["speckle"] = (s1, fourier_shift(s1, t_speckle, False), t_speckle, 10)
snow = tifffile.imread(os.path.join(os.path.dirname(spam.__file__), "data", "snow", "snow.tif")).astype(np.float64)
t_snow = np.array([-0.41, 0.83, 1.27])
cases["snow"] = (snow, fourier_shift(snow, t_snow, True), t_snow, 5)
for name, (a, b, t, ns) in cases.items():
    d = f"{out}/{name}"
    os.makedirs(d, exist_ok=True)
    for k, im in (("im1", a), ("im2", b)):
        q = quantise(im)
        tifffile.imwrite(f"{d}/{k}.tif", q)
        with open(f"{d}/{k}.bin", "wb") as fh:
            np.array(q.shape[::-1], dtype=np.int32).tofile(fh)
            q.astype(np.float32).tofile(fh)
    np.savetxt(f"{d}/truth.txt", t)
    for hws in (10, 16):
        pos, dims = spam.DIC.makeGrid(a.shape, ns)
        keep = hws + 3 + 4  # window, search margin and the spline's support inside the volume
        interior = np.all((pos >= keep) & (pos <= np.array(a.shape) - 1 - keep), axis=1)
        guess = np.full((len(pos), 20), np.nan)
        guess[:, 0] = np.arange(1, len(pos) + 1)
        guess[:, 1:4] = pos
        phi = np.eye(4)[:3].copy()
        phi[:, 3] = np.round(t)
        guess[interior, 4:16] = phi.ravel()
        guess[:, 16:20] = [0, 0, 2, 0]
        cols = "NodeNumber Zpos Ypos Xpos Fzz Fzy Fzx Zdisp Fyz Fyy Fyx Ydisp Fxz Fxy Fxx Xdisp error iterations returnStatus deltaPhiNorm".split()
        np.savetxt(f"{d}/guess-{hws}.tsv", guess, delimiter="\t", header="\t".join(cols), comments="", fmt="%.7f")
        np.savetxt(f"{d}/points-{hws}.csv", pos[interior][:, ::-1], delimiter=",", fmt="%d")
        print(f"{name}: {a.shape[0]}³, shift {t}, -hws {hws} -ns {ns}: {interior.sum()} interior points")
PYEOF
timed() { # timed LOG CMD...: wall seconds and peak RSS (KiB) of CMD into LOG.time
  local log=$1; shift
  /usr/bin/time -f "%e %M" -o "$log.time" "$@" > "$log" 2>&1 || { echo "failed: $*"; tail -5 "$log"; exit 1; }
}
for name in speckle snow; do
  d=$OUT/$name
  ns=$([ $name = speckle ] && echo 10 || echo 5)
  for hws in 10 16; do
    echo "== $name, $((2 * hws + 1))³ windows"
    timed "$d/oc-$hws.log" "$OC" "$d/im1.bin" "$d/im2.bin" "$d/points-$hws.csv" "$d/oc-$hws.csv" "$hws" 2 20 0.001
    for o in 3 1; do
      timed "$d/dvc-o$o-$hws.log" $D ldic "$d/im1.tif" "$d/im2.tif" -np 2 -hws $hws -ns $ns -o $o \
        -pf "$d/guess-$hws.tsv" -od "$d" -pre "dvc-o$o-$hws" -q
    done
    if [ $SPAM = 1 ] && [ $hws = 10 ]; then
      timed "$d/spam-$hws.log" "$SPAM_LDIC" "$d/im1.tif" "$d/im2.tif" -np 2 -hws $hws -ns $ns \
        -pf "$d/guess-$hws.tsv" -od "$d" -pre "spam-$hws"
    fi
  done
done
"$PY" - "$OUT" <<'PYEOF'
import os, sys, numpy as np, pandas as pd
out = sys.argv[1]
def wall_rss(log):
    s, k = open(log + ".time").read().split()[-2:]
    return float(s), int(k) / 1024
print("\n| pair | window | tool | points | points/s | rms |u − truth| (voxel) | max | mean iterations | peak RSS (MB) |")
print("|---|---|---|---|---|---|---|---|---|")
for name in ("speckle", "snow"):
    d = f"{out}/{name}"
    t = np.loadtxt(f"{d}/truth.txt")
    for hws in (10, 16):
        w = f"{2 * hws + 1}³"
        rows = []
        oc = pd.read_csv(f"{d}/oc-{hws}.csv")
        kv = dict(l.split() for l in open(f"{d}/oc-{hws}.log") if len(l.split()) == 2)
        u = np.stack([oc.w, oc.v, oc.u], axis=1)
        err = np.linalg.norm(u - t, axis=1)
        wall, rss = wall_rss(f"{d}/oc-{hws}.log")
        rows.append(("OpenCorr (FFT-CC + IC-GN)", len(oc), len(oc) / float(kv["t_correlation"]), err, oc.iteration.mean(), rss))
        rows.append(("OpenCorr IC-GN stage alone", len(oc), len(oc) / float(kv["t_icgn"]), err, oc.iteration.mean(), rss))
        tools = [(f"dvc-stream ldic -o {o}", f"{d}/dvc-o{o}-{hws}-ldic.tsv", f"{d}/dvc-o{o}-{hws}.log") for o in (3, 1)]
        if os.path.exists(f"{d}/spam-{hws}-ldic.tsv"):
            tools.append(("spam-ldic (default, trilinear)", f"{d}/spam-{hws}-ldic.tsv", f"{d}/spam-{hws}.log"))
        for label, tsv, log in tools:
            r = pd.read_csv(tsv, sep="\t")
            r = r[np.isfinite(r.Zdisp) & (r.returnStatus != -7)]
            u = r[["Zdisp", "Ydisp", "Xdisp"]].to_numpy()
            err = np.linalg.norm(u - t, axis=1)
            wall, rss = wall_rss(log)
            rows.append((label, len(r), len(r) / wall, err, r.iterations.mean(), rss))
        for label, n, pps, err, it, rss in rows:
            rms = np.sqrt(np.nanmean(err ** 2))
            print(f"| {name} | {w} | {label} | {n} | {pps:.0f} | {rms:.4f} | {np.nanmax(err):.4f} | {it:.2f} | {rss:.0f} |")
PYEOF

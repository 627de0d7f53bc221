#!/usr/bin/env bash
# Runs spam's example command lines (tests/data/spam-0.9.1/README.md, rows 2–33, and the 2D
# rows of tests/data/spam-0.9.1/2d/README.md, with only the program name changed) with two dvc-stream binaries and compares every output file byte for
# byte. For refactors that must not change results: build the old tree, copy its binary, build
# the new one, then
#   bash tests/tools/compare-binaries.sh /tmp/dvc-old target/debug/dvc-stream
# Exit status 1 and the differing files listed when any output differs.
set -euo pipefail
OLD=$(realpath "$1"); NEW=$(realpath "$2")
EX=$(realpath "$(dirname "$0")/../data/spam-0.9.1")
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
run_all() {
  local D=$1 d=$2
  # The same argv[0] for both: tables record their command line.
  dvc() { ( exec -a dvc-stream "$D" "$@" ); }
  mkdir -p "$d/out"; cd "$d"
  cp "$EX"/inputs/*.tif .
  dvc reg im1.tif im2.tif -od out -bb 2 -be 1 -q
  dvc pixel-search im1.tif im2.tif -np 2 -ns 15 -hws 5 -sr -3 3 -3 3 -3 3 -od out -tif -vtk -q
  dvc ldic im1.tif im2.tif -np 2 -hws 5 -pf out/im1-im2-pixelSearch.tsv -od out -tif -vtk -q
  dvc reg im1.tif im3.tif -od out -bb 2 -be 1 -def -q
  dvc ldic im1.tif im3.tif -np 2 -hws 5 -ns 15 -pf out/im1-im3-registration.tsv -od out -q
  dvc regular-strain -pf out/im1-im3-ldic.tsv -np 2 -comp vol dev volss devss r z U e Up -tif -vtk -q
  dvc regular-strain -pf out/im1-im3-ldic.tsv -np 2 -g -comp vol dev e -vtk -q
  dvc regular-strain -pf out/im1-im3-ldic.tsv -np 2 -raw -comp vol dev -q
  dvc ldic im1.tif im3.tif -np 2 -hws 5 -ns 10 -pf out/im1-im3-registration.tsv -mf1 mask1.tif -od out -pre ldic-ns10-masked -q
  dvc ldic im1.tif im3.tif -np 2 -hws 5 -pf out/ldic-ns10-masked-ldic.tsv -od out -pre rerun -q
  dvc filter-phi-field -pf out/ldic-ns10-masked-ldic.tsv -np 2 -srs -cint -tif -vtk -q
  dvc filter-phi-field -pf out/ldic-ns10-masked-ldic.tsv -np 2 -slqc -clqf -F no -pre lqc -q
  dvc filter-phi-field -pf out/ldic-ns10-masked-ldic.tsv -np 2 -fm -pre median -q
  dvc filter-phi-field -pf out/ldic-ns10-masked-ldic.tsv -np 2 -pre noselect -q
  dvc pixel-search im1.tif im3.tif -np 2 -ns 10 -hws 5 -sr -2 2 -2 2 -2 2 -od out -pre ps13 -q
  dvc filter-phi-field -pf out/ps13-pixelSearch.tsv -np 2 -scc -scct 0.998 -cint -F no -pre ps13 -q
  dvc pass-phi-field -pf out/im1-im3-registration.tsv -ns 20 -im1 im1.tif -np 2 -od out -tif -vtk -q
  dvc pass-phi-field -pf out/im1-im3-ldic.tsv -ns 10 -im1shape 60 60 60 -np 2 -od out -q
  dvc pass-phi-field -pf out/im1-im3-ldic.tsv -lab1 lab1.tif -np 2 -od out -vtk -q
  dvc pass-phi-field -pf out/im1-im3-ldic.tsv -regs out/im1-im3-registration.tsv -np 2 -od out -q
  dvc pixel-search im1.tif im2.tif -lab1 lab1.tif -np 2 -sr -3 3 -3 3 -3 3 -od out -pre psLab -vtk -q
  dvc ddic im1.tif lab1.tif im2.tif -np 2 -pf out/psLab-pixelSearch.tsv -od out -q
  dvc ddic im1.tif lab2.tif im2.tif -np 2 -pf out/im1-im2-registration.tsv -od out -pre lab2 -vtk -q
  dvc pixel-search-propagate im1.tif im3.tif -sp 30 30 30 1 -2 1 -ns 15 -hws 5 -sr -2 2 -2 2 -2 2 -od out -pre psp -tif -vtk -q
  dvc pixel-search-propagate im1.tif im2.tif -sp 17 17 17 1 -2 1 -lab1 lab1.tif -sr -2 2 -2 2 -2 2 -od out -pre pspLab -q
  dvc deform-image im1.tif -pf out/im1-im3-registration.tsv -od out -q
  dvc deform-image im1.tif -pf out/im1-im3-ldic.tsv -np 2 -od out -q
  dvc deform-image im1.tif -pf out/im1-im3-ldic.tsv -np 2 -disp -od out -q
  # The 2D rows, in out/2d.
  cp "$EX"/2d/inputs/*.tif .
  dvc reg im2d-1.tif im2d-3.tif -bb 2 -be 1 -od out/2d -def -q
  dvc reg im2d-1.tif im2d-2.tif -bb 2 -be 1 -od out/2d -q
  dvc pixel-search im2d-1.tif im2d-2.tif -np 2 -ns 15 -hws 7 -sr -4 4 -4 4 -4 4 -od out/2d -vtk -tif -q
  dvc pixel-search im2d-1.tif im2d-2.tif -np 2 -ns 15 -hws 7 -sr 0 0 -4 4 -4 4 -od out/2d -pre ps2 -q
  dvc ldic im2d-1.tif im2d-3.tif -np 2 -hws 7 -ns 15 -pf out/2d/im2d-1-im2d-3-registration.tsv -od out/2d -vtk -tif -q
  dvc pixel-search-propagate im2d-1.tif im2d-3.tif -sp 0 80 80 0 -2 1 -ns 15 -hws 7 -sr 0 0 -2 2 -2 2 -od out/2d -pre psp -vtk -tif -q
  dvc regular-strain -pf out/2d/im2d-1-im2d-3-ldic.tsv -np 2 -comp vol dev e U r -tif -vtk -q
  dvc pixel-search im2d-1.tif im2d-2.tif -lab1 lab2d-1.tif -np 2 -sr 0 0 -4 4 -4 4 -od out/2d -pre psLab -vtk -q
  dvc ddic im2d-1.tif lab2d-1.tif im2d-2.tif -np 2 -pf out/2d/psLab-pixelSearch.tsv -od out/2d -q
  dvc pixel-search-propagate im2d-1.tif im2d-2.tif -sp 0 40 40 0 -2 1 -lab1 lab2d-1.tif -sr 0 0 -2 2 -2 2 -od out/2d -pre pspLab -vtk -q
}
( run_all "$OLD" "$WORK/old" ) 2> "$WORK/old.log"
( run_all "$NEW" "$WORK/new" ) 2> "$WORK/new.log"
status=0
n=0
while IFS= read -r f; do
  n=$((n + 1))
  if [ ! -f "$WORK/new/out/$f" ]; then echo "only in the old run: $f"; status=1
  elif ! cmp -s "$WORK/old/out/$f" "$WORK/new/out/$f"; then echo "differs: $f"; status=1; fi
done < <(cd "$WORK/old/out" && find . -type f | sort)
while IFS= read -r f; do
  [ -f "$WORK/old/out/$f" ] || { echo "only in the new run: $f"; status=1; }
done < <(cd "$WORK/new/out" && find . -type f | sort)
echo "$n output files compared: $([ $status = 0 ] && echo identical || echo 'differences above')"
exit $status

"""Errors of a ddic table against the exact truth of `dvc-stream synth --grains`.

The truth gives each grain's Φ about its centre; it is moved to the centre of mass where ddic
measured (t_p = t_c + (F − I)(p − c)) before comparing. Prints converged count, translation
error (max over axes: median, rms, max, count over 0.05 voxel) and rotation error (angle of
R_measured R_trueᵀ), median and max.
Usage: python bench/ddic_errors.py TRUTH.tsv DDIC.tsv [NAME] [SECONDS]
"""
import sys

import numpy as np
import pandas as pd

FC = ["Fzz", "Fzy", "Fzx", "Fyz", "Fyy", "Fyx", "Fxz", "Fxy", "Fxx"]


def errors(truth, d):
    d, tr = d.iloc[1:], truth.iloc[1:]
    p, c = d[["Zpos", "Ypos", "Xpos"]].to_numpy(), tr[["Zpos", "Ypos", "Xpos"]].to_numpy()
    ft = tr[FC].to_numpy().reshape(-1, 3, 3)
    t_true = tr[["Zdisp", "Ydisp", "Xdisp"]].to_numpy() + np.einsum("nij,nj->ni", ft - np.eye(3), p - c)
    et = np.abs(d[["Zdisp", "Ydisp", "Xdisp"]].to_numpy() - t_true).max(axis=1)
    r = np.einsum("nij,nkj->nik", d[FC].to_numpy().reshape(-1, 3, 3), ft)
    er = np.degrees(np.arccos(np.clip((np.trace(r, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    return (d.returnStatus == 2).to_numpy(), et, er


def report(truth_path, ddic_path, name="ddic", seconds=None):
    truth = pd.read_csv(truth_path, sep="\t")
    ok, et, er = errors(truth, pd.read_csv(ddic_path, sep="\t"))
    n = len(ok)
    speed = f" in {seconds:.1f} s: {n / seconds:.1f} labels/s, {n / seconds / 2:.1f} labels/s/core;" if seconds else ":"
    print(f"{name:11s} {n} labels{speed} converged {ok.sum()}; translation error (converged) "
          f"median {np.median(et[ok]):.4f}, rms {np.sqrt(np.mean(et[ok] ** 2)):.4f}, max {et[ok].max():.4f} voxel, "
          f"{(et[ok] > 0.05).sum()} over 0.05; rotation error median "
          f"{np.median(er[ok]):.3f}, max {er[ok].max():.3f} deg")


if __name__ == "__main__":
    report(sys.argv[1], sys.argv[2], *(sys.argv[3:4] or ["ddic"]), *(map(float, sys.argv[4:5])))

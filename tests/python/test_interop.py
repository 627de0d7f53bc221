"""Files written by dvc-stream read by other implementations (zarr-python, tifffile, pandas,
DuckDB), and files written by tifffile read by dvc-stream. Run by tests/run-all.sh."""

import numpy as np
import pytest
import tifffile
import zarr

from helpers import BIN, EXAMPLES, run


def spam_binning(a, b):
    """spam's binning: drop (N mod b)//2 at the start, block mean, integer floor for uint."""
    n = np.array(a.shape)
    nb = n // b
    top = (n % b) // 2
    s = a[top[0]:top[0] + nb[0] * b, top[1]:top[1] + nb[1] * b, top[2]:top[2] + nb[2] * b]
    s = s.reshape(nb[0], b, nb[1], b, nb[2], b).astype(np.float64).sum(axis=(1, 3, 5))
    if a.dtype.kind in "ui":
        return np.floor(s / b ** 3).astype(a.dtype)
    return (s / b ** 3).astype(a.dtype)


CASES = [
    ("uint8", None, False),
    ("uint16", None, ">"),
    ("float32", None, ">"),
    ("uint16", None, False),
    ("uint16", "zlib", False),
    ("uint16", "lzw", True),
    ("uint16", "zstd", True),
    ("int16", "zlib", False),
    ("float32", None, True),
    ("float32", "zlib", False),
]


@pytest.mark.parametrize("dtype,compression,bigtiff", CASES)
def test_tifffile_to_zarr_python(tmp_path, dtype, compression, bigtiff):
    rng = np.random.default_rng(1)
    shape = (21, 34, 29)
    if dtype == "float32":
        a = rng.normal(1000, 300, shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    src = tmp_path / "in.tif"
    if bigtiff == ">":  # big-endian file
        tifffile.imwrite(src, a, compression=compression, byteorder=">")
    else:
        tifffile.imwrite(src, a, compression=compression, bigtiff=bigtiff)
    out = tmp_path / "out.zarr"
    run(BIN / "tiff2zarr", src, out, "--chunk3", "8", "16", "10", "--levels", "3", "-q")
    g = zarr.open_group(str(out), mode="r")
    assert g.attrs["ome"]["version"] == "0.5"
    datasets = g.attrs["ome"]["multiscales"][0]["datasets"]
    assert [d["path"] for d in datasets] == ["0", "1", "2"]
    assert g.attrs["dvc_stream"]["source"] == "in.tif"
    np.testing.assert_array_equal(g["0"][:], a)
    for k in (1, 2):
        ref = spam_binning(a, 2 ** k)
        if dtype == "float32":
            np.testing.assert_allclose(g[str(k)][:], ref, rtol=1e-6)
        else:
            np.testing.assert_array_equal(g[str(k)][:], ref)
    back = tmp_path / "back.tif"
    run(BIN / "zarr2tiff", out, back, "-q")
    np.testing.assert_array_equal(tifffile.imread(back), a)


def test_slice_folder_and_sharding(tmp_path):
    rng = np.random.default_rng(2)
    a = rng.integers(0, 65535, (12, 20, 24), endpoint=True).astype("uint16")
    folder = tmp_path / "slices"
    folder.mkdir()
    for z in range(a.shape[0]):
        tifffile.imwrite(folder / f"scan_{z}.tif", a[z])
    out = tmp_path / "s.zarr"
    run(BIN / "tiff2zarr", folder, out, "--chunk", "4", "--shard", "8", "--codec", "zstd:3",
        "--levels", "2", "--voxel-size", "2", "1.5", "1.5", "--unit", "micrometer", "-q")
    g = zarr.open_group(str(out), mode="r")
    np.testing.assert_array_equal(g["0"][:], a)
    ms = g.attrs["ome"]["multiscales"][0]
    assert [ax["unit"] for ax in ms["axes"]] == ["micrometer"] * 3
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales == [[2.0, 1.5, 1.5], [4.0, 3.0, 3.0]]


def test_zarr_python_store_read_by_dvc_stream(tmp_path):
    """A plain v3 array written by zarr-python is a volume for dvc-stream."""
    rng = np.random.default_rng(3)
    a = rng.normal(0, 1, (17, 18, 19)).astype("float32")
    z = zarr.create_array(str(tmp_path / "za.zarr"), shape=a.shape, chunks=(5, 6, 7), dtype="float32")
    z[:] = a
    r = run(BIN / "dvc-stream", "stats", tmp_path / "za.zarr", "-q")
    vals = dict(line.split(": ", 1) for line in r.stdout.splitlines())
    assert float(vals["min"]) == pytest.approx(float(a.min()))
    assert float(vals["max"]) == pytest.approx(float(a.max()))
    assert float(vals["mean"]) == pytest.approx(float(a.mean()), abs=1e-5)


def test_synth_truth_in_pandas_and_duckdb(tmp_path):
    import duckdb
    import pandas as pd

    run(BIN / "dvc-stream", "synth", tmp_path / "s", "--shape", "40", "--translate", "1", "2", "3", "--truth-ns", "10", "-q")
    df = pd.read_parquet(tmp_path / "s" / "truth.parquet")
    assert len(df) == 27
    assert {"NodeNumber", "Zpos", "Zdisp", "Fzz", "returnStatus"} <= set(df.columns)
    assert str(df["returnStatus"].dtype) == "int32"
    np.testing.assert_allclose(df["Zdisp"], 1.0)
    tsv = pd.read_csv(tmp_path / "s" / "truth.tsv", sep="\t")
    np.testing.assert_allclose(tsv["Xdisp"].to_numpy(), df["Xdisp"].to_numpy(), atol=5e-8)
    con = duckdb.connect()
    n = con.execute(f"select count(*) from '{tmp_path / 's' / 'truth.parquet'}' where returnStatus = 2").fetchall()[0][0]
    assert n == 27
    meta = con.execute(
        f"select value from parquet_kv_metadata('{tmp_path / 's' / 'truth.parquet'}') where key = 'dvc_stream.tool'"
    ).fetchall()[0][0]
    assert meta == b"synth"


def test_zarr_v2_array_read_by_dvc_stream(tmp_path):
    """A Zarr v2 array (as older pipelines write) is read too."""
    rng = np.random.default_rng(4)
    a = rng.integers(0, 4000, (11, 13, 15)).astype("uint16")
    z = zarr.create_array(str(tmp_path / "v2.zarr"), shape=a.shape, chunks=(4, 5, 6), dtype="uint16", zarr_format=2)
    z[:] = a
    r = run(BIN / "dvc-stream", "stats", tmp_path / "v2.zarr", "-q")
    vals = dict(line.split(": ", 1) for line in r.stdout.splitlines())
    assert vals["shape (Z Y X)"] == "11 13 15"
    assert vals["dtype"] == "uint16"
    assert float(vals["min"]) == a.min() and float(vals["max"]) == a.max()
    assert float(vals["mean"]) == pytest.approx(a.mean(), abs=1e-6)


def test_shard_parts_folder_is_one_dataset_for_pandas_and_duckdb(tmp_path):
    """The parts folder of a sharded run reads as one table in pandas and DuckDB, with the
    rows of the merged table."""
    import duckdb
    import pandas as pd
    d = tmp_path / "s"
    run(BIN / "dvc-stream", "synth", d, "--shape", "48", "--chunk", "16", "--translate", "0.5", "0", "-1", "-q")
    for k in range(3):
        run(BIN / "dvc-stream", "ldic", d / "im1.zarr", d / "im2.zarr", "-hws", "5", "-ns", "6", "-od", tmp_path / "o",
            "-pre", "r", "-q", "--shard", f"{k}/3")
    parts = tmp_path / "o" / "r-ldic.parts"
    run(BIN / "dvc-stream", "merge", parts)
    merged = pd.read_parquet(tmp_path / "o" / "r-ldic.parquet")
    by_pandas = pd.read_parquet(parts).sort_values("NodeNumber").reset_index(drop=True)
    pd.testing.assert_frame_equal(by_pandas, merged)
    n, lo, hi = duckdb.connect().execute(f"select count(*), min(NodeNumber), max(NodeNumber) from '{parts}/*.parquet'").fetchall()[0]
    assert (n, lo, hi) == (len(merged), 0, len(merged) - 1)

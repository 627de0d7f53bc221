"""Each table has exactly its tool's columns, with integer types where the values are integers,
and the grid in its metadata (issue 20), as DuckDB and polars read them."""

import json

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from helpers import BIN, EXAMPLES, run

PHI = ["Zpos", "Ypos", "Xpos", "Fzz", "Fzy", "Fzx", "Zdisp", "Fyz", "Fyy", "Fyx", "Ydisp",
       "Fxz", "Fxy", "Fxx", "Xdisp"]


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    d = tmp_path_factory.mktemp("tables")
    inp = EXAMPLES / "inputs"
    reg = EXAMPLES / "reg/im1-im2-registration.tsv"
    dvc = BIN / "dvc-stream"
    run(dvc, "reg", inp / "im1.tif", inp / "im2.tif", "-bb", "2", "-od", d, "-q")
    run(dvc, "ldic", inp / "im1.tif", inp / "im2.tif", "-hws", "5", "-ns", "15", "-pf", reg, "-od", d, "-q")
    run(dvc, "pixel-search", inp / "im1.tif", inp / "im2.tif", "-hws", "5", "-ns", "15",
        "-sr", "-3", "3", "-3", "3", "-3", "3", "-od", d, "-q")
    run(dvc, "ddic", inp / "im1.tif", inp / "lab1.tif", inp / "im2.tif", "-pf", reg, "-od", d,
        "-pre", "lab1", "-q")
    run(dvc, "labels", inp / "lab1.tif", "-od", d, "-q")
    run(dvc, "regular-strain", "-pf", d / "im1-im2-ldic.tsv", "-comp", "vol", "-od", d, "-q")
    return d


EXPECTED = {
    "im1-im2-registration.parquet": (["NodeNumber"] + PHI + ["error", "iterations", "returnStatus", "deltaPhiNorm"]),
    # ldic adds each point's predicted displacement standard deviation (issue 17).
    "im1-im2-ldic.parquet": (["NodeNumber"] + PHI + ["error", "iterations", "returnStatus", "deltaPhiNorm", "Zdisp_sd", "Ydisp_sd", "Xdisp_sd"]),
    "im1-im2-pixelSearch.parquet": (["NodeNumber"] + PHI + ["pixelSearchCC", "returnStatus", "error", "deltaPhiNorm", "iterations"]),
    "lab1-ddic.parquet": (["Label"] + PHI + ["PSCC", "error", "iterations", "returnStatus", "deltaPhiNorm", "LabelDilate"]),
}
INTEGERS = {"NodeNumber", "Label", "iterations", "returnStatus", "LabelDilate"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_phi_tables_have_their_tools_columns(tables, name):
    path = tables / name
    cols = duckdb.sql(f"describe select * from '{path}'").fetchall()
    assert [c[0] for c in cols] == EXPECTED[name]
    for col, typ, *_ in cols:
        assert (typ in ("BIGINT", "INTEGER")) == (col in INTEGERS), (col, typ)
    df = pl.read_parquet(path)
    assert df.columns == EXPECTED[name]
    assert df.schema["returnStatus"] == pl.Int32


def test_label_table_is_integer_where_values_are(tables):
    df = pl.read_parquet(tables / "lab1-labels.parquet")
    for c in ["Zmin", "Zmax", "Ymin", "Ymax", "Xmin", "Xmax", "volume"]:
        assert df.schema[c] == pl.Int64, c
    assert df.schema["Zcom"] == pl.Float64
    # Label 0 (the background) has no box: null, not NaN.
    assert df["Zmin"][0] is None and df["volume"][1] > 0


def test_strain_table_records_its_grid(tables):
    meta = pq.read_metadata(tables / "im1-im2-ldic-strain-Q8.parquet").metadata
    dims = json.loads(meta[b"dvc_stream.grid_dims"])
    spacing = json.loads(meta[b"dvc_stream.grid_spacing"])
    n = duckdb.sql(f"select count(*) from '{tables / 'im1-im2-ldic-strain-Q8.parquet'}'").fetchall()[0][0]
    assert dims[0] * dims[1] * dims[2] == n and spacing == [15.0, 15.0, 15.0]

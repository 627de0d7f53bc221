"""The voxel size set on an input TIFF comes out unchanged through tiff2zarr → reg → ldic →
regular-strain, deform-image and zarr2tiff (issue 20), and every store written validates with
yaozarrs and ome-zarr-models, without warnings."""

import json
import warnings

import numpy as np
import ome_zarr_models.v05 as ome
import pyarrow.parquet as pq
import pytest
import tifffile
import yaozarrs
import zarr

from helpers import BIN, EXAMPLES, run

ZYX = [0.7, 0.6, 0.5]


def table_voxel_size(path):
    meta = pq.read_metadata(path).metadata
    return json.loads(meta[b"dvc_stream.voxel_size"])


def check_store(path, zyx, unit):
    g = zarr.open_group(str(path), mode="r")
    ms = g.attrs["ome"]["multiscales"][0]
    scale = next(t["scale"] for t in ms["datasets"][0]["coordinateTransformations"] if t["type"] == "scale")
    np.testing.assert_allclose(scale, zyx, rtol=1e-9)
    assert [a.get("unit") for a in ms["axes"]] == [unit] * 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yaozarrs.validate_zarr_store(str(path))
        ome.Image.from_zarr(g)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    d = tmp_path_factory.mktemp("voxel")
    for name in ("im1", "im2"):
        a = tifffile.imread(EXAMPLES / "inputs" / f"{name}.tif")
        tifffile.imwrite(d / f"{name}.tif", a, imagej=True, resolution=(1 / ZYX[2], 1 / ZYX[1]),
                         metadata={"spacing": ZYX[0], "unit": "um"})
        run(BIN / "tiff2zarr", d / f"{name}.tif", d / f"{name}.zarr", "--levels", "2", "-q")
    dvc = BIN / "dvc-stream"
    run(dvc, "reg", d / "im1.zarr", d / "im2.zarr", "-bb", "2", "-od", d, "-q")
    run(dvc, "ldic", d / "im1.zarr", d / "im2.zarr", "-hws", "5", "-ns", "15", "-pf",
        d / "im1-im2-registration.tsv", "-od", d, "-q")
    run(dvc, "regular-strain", "-pf", d / "im1-im2-ldic.parquet", "-comp", "vol", "-od", d, "-q")
    run(dvc, "deform-image", d / "im1.zarr", "-pf", d / "im1-im2-registration.tsv", "--output",
        d / "def.zarr", "-q")
    run(BIN / "zarr2tiff", d / "def.zarr", d / "def.tif", "-q")
    return d


def test_tiff2zarr_reads_imagej_spacing(chain):
    check_store(chain / "im1.zarr", ZYX, "micrometer")
    # stats says so, with the levels the store holds; level 1's voxels are twice as large.
    out = run(BIN / "dvc-stream", "stats", chain / "im1.zarr", "-q").stdout
    assert "levels (bin factors stored): 1 2" in out, out
    assert "voxel size (Z Y X): 0.7 × 0.6 × 0.5 micrometer" in out, out
    out = run(BIN / "dvc-stream", "stats", chain / "im1.zarr", "--bin", "2", "-q").stdout
    assert "voxel size (Z Y X): 1.4 × 1.2 × 1 micrometer" in out, out


def test_tables_record_the_voxel_size(chain):
    for t in ("im1-im2-registration.parquet", "im1-im2-ldic.parquet", "im1-im2-ldic-strain-Q8.parquet"):
        v = table_voxel_size(chain / t)
        np.testing.assert_allclose(v["zyx"], ZYX, rtol=1e-9)
        assert v["unit"] == "micrometer", t


def test_deformed_store_and_its_tiff_keep_it(chain):
    check_store(chain / "def.zarr", ZYX, "micrometer")
    with tifffile.TiffFile(chain / "def.tif") as f:
        ij = f.imagej_metadata
        assert ij["spacing"] == pytest.approx(ZYX[0]) and ij["unit"] == "micron"
        page = f.pages[0]
        xr = page.tags["XResolution"].value
        yr = page.tags["YResolution"].value
        assert xr[1] / xr[0] == pytest.approx(ZYX[2], rel=1e-6)
        assert yr[1] / yr[0] == pytest.approx(ZYX[1], rel=1e-6)


def test_unknown_voxel_size_writes_no_unit(tmp_path):
    a = tifffile.imread(EXAMPLES / "inputs" / "im1.tif")
    tifffile.imwrite(tmp_path / "plain.tif", a)
    run(BIN / "tiff2zarr", tmp_path / "plain.tif", tmp_path / "plain.zarr", "--levels", "2", "-q")
    check_store(tmp_path / "plain.zarr", [1.0, 1.0, 1.0], None)
    run(BIN / "dvc-stream", "synth", tmp_path / "s", "--shape", "32", "-q")
    check_store(tmp_path / "s" / "im1.zarr", [1.0, 1.0, 1.0], None)


def check_labels(path):
    g = zarr.open_group(str(path), mode="r")
    assert "image-label" in g.attrs["ome"], "written as an OME-Zarr image-label"
    assert g.attrs["ome"]["multiscales"][0]["type"] == "nearest"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yaozarrs.validate_zarr_store(str(path))
    levels = [d["path"] for d in g.attrs["ome"]["multiscales"][0]["datasets"]]
    full = set(np.unique(g[levels[0]][:]))
    for lv in levels[1:]:
        # Nearest neighbour: every label of a coarse level is a label of level 0, none averaged.
        assert set(np.unique(g[lv][:])) <= full, lv


def test_label_volumes_are_image_labels(tmp_path):
    run(BIN / "dvc-stream", "synth", tmp_path / "g", "--shape", "64", "--grains", "6",
        "--grain-radius", "6", "9", "-q")
    check_labels(tmp_path / "g" / "lab1.zarr")
    # tiff2zarr --labels: spam's 8-ball label image, with a pyramid.
    run(BIN / "tiff2zarr", EXAMPLES / "inputs" / "lab1.tif", tmp_path / "lab1.zarr", "--labels",
        "--levels", "3", "-q")
    check_labels(tmp_path / "lab1.zarr")
    g = zarr.open_group(str(tmp_path / "lab1.zarr"), mode="r")
    np.testing.assert_array_equal(g["0"][:], tifffile.imread(EXAMPLES / "inputs" / "lab1.tif"))
    assert g["1"][:].max() == 8 and g["1"].shape == (30, 30, 30)


def napari_layers(path):
    """napari-ome-zarr's reader, headless: (layer type, scale) of each layer it makes."""
    from napari_ome_zarr import napari_get_reader

    reader = napari_get_reader(str(path))
    assert reader is not None, path
    return [(kind, kw.get("scale")) for _, kw, kind in reader(str(path))]


def test_napari_opens_labels_as_labels_and_images_at_their_scale(chain, tmp_path):
    run(BIN / "dvc-stream", "synth", tmp_path / "g", "--shape", "48", "--grains", "4",
        "--grain-radius", "5", "7", "-q")
    assert [k for k, _ in napari_layers(tmp_path / "g" / "lab1.zarr")] == ["labels"]
    assert [k for k, _ in napari_layers(tmp_path / "g" / "im1.zarr")] == ["image"]
    (kind, scale), = napari_layers(chain / "im1.zarr")
    assert kind == "image"
    np.testing.assert_allclose(scale, ZYX, rtol=1e-9)

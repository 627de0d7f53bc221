"""spam 0.9.1 itself reads dvc-stream's files, and spam's registration agrees with ours on
synthetic data that spam never saw."""
import importlib.resources  # noqa: F401  (spam 0.9.1 needs it imported first)

import numpy as np
import tifffile

import spam.DIC
import spam.deformation
import spam.helpers

from helpers import BIN, EXAMPLES, run


def test_spam_reads_our_registration(tmp_path):
    run(BIN / "dvc-stream", "reg", EXAMPLES / "inputs" / "im1.tif", EXAMPLES / "inputs" / "im3.tif",
        "-bb", "2", "-be", "1", "-od", tmp_path, "-q")
    ours = spam.helpers.readCorrelationTSV(str(tmp_path / "im1-im3-registration.tsv"))
    ref = spam.helpers.readCorrelationTSV(str(EXAMPLES / "reg" / "im1-im3-registration.tsv"))
    np.testing.assert_allclose(ours["PhiField"][0], ref["PhiField"][0], atol=2e-7)
    assert ours["returnStatus"] == ref["returnStatus"] == 2
    assert ours["iterations"] == ref["iterations"]
    np.testing.assert_array_equal(ours["fieldCoords"], ref["fieldCoords"])


def test_spam_reads_our_grid_field(tmp_path):
    run(BIN / "dvc-stream", "synth", tmp_path / "s", "--shape", "50", "--translate", "1", "-2", "0.5",
        "--truth-ns", "10", "-q")
    d = spam.helpers.readCorrelationTSV(str(tmp_path / "s" / "truth.tsv"), readError=True)
    assert list(d["fieldDims"]) == [4, 4, 4]
    assert d["PhiField"].shape == (64, 4, 4)
    np.testing.assert_allclose(d["PhiField"][:, 0, 3], 1.0)
    np.testing.assert_allclose(d["PhiField"][:, 1, 3], -2.0)
    np.testing.assert_allclose(d["fieldCoords"][0], [10, 10, 10])


def test_spam_register_agrees_on_a_synthetic_pair(tmp_path):
    run(BIN / "dvc-stream", "synth", tmp_path / "s", "--shape", "64", "--translate", "0.7", "-1.4", "0.3",
        "--rotate", "1.5", "0", "0", "--format", "tiff", "-q")
    im1 = tifffile.imread(tmp_path / "s" / "im1.tif")
    im2 = tifffile.imread(tmp_path / "s" / "im2.tif")
    ref = spam.DIC.registerMultiscale(im1, im2, 2, verbose=False)
    run(BIN / "dvc-stream", "reg", tmp_path / "s" / "im1.tif", tmp_path / "s" / "im2.tif",
        "-bb", "2", "-be", "1", "-od", tmp_path, "-q")
    ours = spam.helpers.readCorrelationTSV(str(tmp_path / "im1-im2-registration.tsv"))
    np.testing.assert_allclose(ours["PhiField"][0], ref["Phi"], atol=1e-6)
    assert ours["returnStatus"] == ref["returnStatus"]
    assert ours["iterations"] == ref["iterations"]


def test_spam_reads_our_pixel_search_and_strain_and_computes_the_same_strain(tmp_path):
    """spam reads our pixel-search TSVs (grid and labels), and spam's own Q8 strain of our
    ldic field equals ours."""
    im1, im2, im3 = (EXAMPLES / "inputs" / f for f in ("im1.tif", "im2.tif", "im3.tif"))
    run(BIN / "dvc-stream", "pixel-search", im1, im2, "-ns", "15", "-hws", "5", "-od", tmp_path, "-q")
    d = spam.helpers.readCorrelationTSV(str(tmp_path / "im1-im2-pixelSearch.tsv"), readPixelSearchCC=True)
    assert list(d["fieldDims"]) == [3, 3, 3]
    np.testing.assert_allclose(d["PhiField"][:, 0:3, 3], np.tile([1.0, -2.0, 1.0], (27, 1)))
    assert (d["pixelSearchCC"] > 0.99).all()
    run(BIN / "dvc-stream", "pixel-search", im1, im2, "-lab1", EXAMPLES / "inputs" / "lab1.tif", "-od", tmp_path, "-pre", "lab", "-q")
    d = spam.helpers.readCorrelationTSV(str(tmp_path / "lab-pixelSearch.tsv"))
    assert d["PhiField"].shape == (9, 4, 4)
    run(BIN / "dvc-stream", "ldic", "-o", "1", im1, im3, "-hws", "5", "-ns", "15", "-pf", EXAMPLES / "reg" / "im1-im3-registration.tsv",
        "-od", tmp_path, "-q")
    run(BIN / "dvc-stream", "regular-strain", "-pf", tmp_path / "im1-im3-ldic.tsv", "-comp", "vol", "e", "-q")
    f = spam.helpers.readCorrelationTSV(str(tmp_path / "im1-im3-ldic.tsv"), readConvergence=True)
    Fs = spam.deformation.FfieldRegularQ8(f["PhiField"][:, 0:3, -1].reshape(list(f["fieldDims"]) + [3]), nodeSpacing=[15.0, 15.0, 15.0])
    ref = spam.deformation.decomposeFfield(Fs, ["vol", "e"])
    import pandas as pd
    ours = pd.read_csv(tmp_path / "im1-im3-ldic-strain-Q8.tsv", sep="\t")
    np.testing.assert_allclose(ours["vol"], ref["vol"].ravel(), atol=2e-7)
    np.testing.assert_allclose(ours["ezz"], ref["e"][..., 0, 0].ravel(), atol=2e-7)


def test_spam_reads_our_ddic_and_its_label_toolkit_agrees_with_our_table(tmp_path):
    """spam reads our ddic file as a discrete field (the same values as spam's own ddic on
    row 25 of the examples), and spam's label toolkit gives our label table's bounding
    boxes, volumes and centres of mass on a granular volume it never saw."""
    import duckdb
    import pandas as pd
    import spam.label

    inp = EXAMPLES / "inputs"
    run(BIN / "dvc-stream", "ddic", inp / "im1.tif", inp / "lab1.tif", inp / "im2.tif",
        "-pf", EXAMPLES / "pixelSearch" / "psLab-pixelSearch.tsv", "-od", tmp_path, "-q")
    ours = spam.helpers.readCorrelationTSV(str(tmp_path / "im1-im2-ddic.tsv"), readConvergence=True,
                                           readError=True, readLabelDilate=True)
    ref = spam.helpers.readCorrelationTSV(str(EXAMPLES / "ddic" / "im1-im2-ddic.tsv"), readConvergence=True,
                                          readError=True, readLabelDilate=True)
    assert ours["numberOfLabels"] == ref["numberOfLabels"] == 9
    np.testing.assert_array_equal(ours["returnStatus"], ref["returnStatus"])
    np.testing.assert_allclose(ours["PhiField"][1:, :3, 3], ref["PhiField"][1:, :3, 3], atol=0.01)
    np.testing.assert_array_equal(ours["LabelDilate"], ref["LabelDilate"])

    run(BIN / "dvc-stream", "synth", tmp_path / "g", "--grains", "12", "--shape", "60", "--grain-radius", "4", "7",
        "--format", "tiff", "-q")
    run(BIN / "dvc-stream", "labels", tmp_path / "g" / "lab1.tif", "-od", tmp_path, "-q")
    lab = tifffile.imread(tmp_path / "g" / "lab1.tif")
    boxes = spam.label.boundingBoxes(lab)
    coms = spam.label.centresOfMass(lab)
    vols = spam.label.volumes(lab)
    table = duckdb.sql(f"select * from '{tmp_path / 'lab1-labels.parquet'}' order by Label").df()
    assert len(table) == 13
    got = table[["Zmin", "Zmax", "Ymin", "Ymax", "Xmin", "Xmax"]].to_numpy()[1:]
    np.testing.assert_array_equal(got, boxes[1:])
    np.testing.assert_allclose(table[["Zcom", "Ycom", "Xcom"]].to_numpy()[1:], coms[1:], atol=1e-4)
    np.testing.assert_array_equal(table["volume"].to_numpy()[1:], vols[1:])
    ddic = pd.read_parquet(tmp_path / "im1-im2-ddic.parquet")
    assert list(ddic.columns[:4]) == ["Label", "Zpos", "Ypos", "Xpos"] and (ddic.returnStatus[1:] == 2).all()

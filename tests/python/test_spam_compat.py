"""spam 0.9.1 itself reads dvc-stream's files, and spam's registration agrees with ours on
synthetic data that spam never saw."""
import importlib.resources  # noqa: F401  (spam 0.9.1 needs it imported first)

import numpy as np
import tifffile

import spam.DIC
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

"""Every VTK file dvc-stream writes opens in meshio, VTK's own legacy reader and pyvista, with
one value per point or cell (issue 20: the ddic glyph file lacked cells, so meshio refused it)."""

import meshio
import numpy as np
import pytest
import pyvista
import vtk

from helpers import BIN, EXAMPLES, run


def vtk_files(tmp_path):
    """A grid VTK (ldic), a label glyph VTK (ddic) and a strain VTK, written by dvc-stream."""
    inp = EXAMPLES / "inputs"
    od = tmp_path / "out"
    run(BIN / "dvc-stream", "ldic", inp / "im1.tif", inp / "im2.tif", "-hws", "5", "-ns", "15",
        "-pf", EXAMPLES / "reg/im1-im2-registration.tsv", "-od", od, "-vtk", "-q")
    run(BIN / "dvc-stream", "ddic", inp / "im1.tif", inp / "lab1.tif", inp / "im2.tif",
        "-pf", EXAMPLES / "reg/im1-im2-registration.tsv", "-od", od, "-pre", "lab1", "-q")
    run(BIN / "dvc-stream", "regular-strain", "-pf", od / "im1-im2-ldic.tsv", "-comp", "vol", "e",
        "-vtk", "-od", od, "-q")
    return {
        "grid": (od / "im1-im2-ldic.vtk", 27),
        "labels": (od / "lab1-ddic.vtk", 9),
        "strain": (od / "im1-im2-ldic-strain-Q8.vtk", 8),
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return vtk_files(tmp_path_factory.mktemp("vtk"))


@pytest.mark.parametrize("which", ["grid", "labels", "strain"])
def test_vtk_reader(files, which):
    path, n = files[which]
    reader = vtk.vtkGenericDataObjectReader()
    reader.SetFileName(str(path))
    reader.Update()
    data = reader.GetOutput()
    assert data is not None
    counts = data.GetNumberOfCells() if which != "labels" else data.GetNumberOfPoints()
    assert counts == n
    if which == "labels":
        assert data.GetNumberOfCells() == n, "one VERTEX cell per label"


@pytest.mark.parametrize("which", ["grid", "labels", "strain"])
def test_pyvista(files, which):
    path, n = files[which]
    mesh = pyvista.read(str(path))
    assert mesh.n_cells == n
    if which == "labels":
        d = mesh.point_data["displacements"]
        assert d.shape == (n, 3) and np.isfinite(d).all()


def test_meshio_reads_the_label_file(files):
    path, n = files["labels"]
    m = meshio.read(str(path))
    assert len(m.points) == n
    assert sum(len(c.data) for c in m.cells) == n
    assert m.point_data["displacements"].shape == (n, 3)


def test_not_from_spam(files):
    for path, _ in files.values():
        assert "VTK file from spam" not in path.read_text()

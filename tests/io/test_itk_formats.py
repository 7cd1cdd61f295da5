"""Films and label maps in ITK formats, written by SimpleITK itself (MetaImage, NRRD, NIfTI)."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from medlung.cli import cli
from medlung.errors import SpacingWarning, UnsupportedImageError
from medlung.io import load_film, sniff_format
from medlung.io.itk_formats import film_from_itk
from medlung.samples import SAMPLES_DIR

ROW_MM, COL_MM = 0.17, 0.14  # anisotropic: ITK's (x, y) spacing is (0.14, 0.17)


@pytest.fixture(scope="module")
def dx_film():
    """A real DX film (with its own spacing) as medlung reads it."""
    return load_film(SAMPLES_DIR / "dx_image.dcm")


def itk_image(pixels: np.ndarray, spacing_xy=(COL_MM, ROW_MM)) -> sitk.Image:
    image = sitk.GetImageFromArray(pixels)
    image.SetSpacing(spacing_xy)
    return image


@pytest.mark.parametrize("suffix", [".mha", ".nrrd", ".nii.gz"])
def test_spacing_comes_back_in_row_col_order(dx_film, tmp_path, suffix):
    pixels = dx_film.pixels.astype(np.uint16)
    path = tmp_path / f"film{suffix}"
    sitk.WriteImage(itk_image(pixels), str(path))
    assert sniff_format(path) == "ITK"
    film = load_film(path)
    assert film.shape == pixels.shape == (169, 211)  # rows, cols: never transposed
    assert np.array_equal(film.pixels, pixels.astype(np.float32))
    assert film.spacing == pytest.approx((ROW_MM, COL_MM)) and film.spacing_source == "itk-header"
    assert film.orientation is None and film.calibrated  # identity direction: orientation not said


def test_single_slice_volume_is_a_film(dx_film, tmp_path):
    volume = sitk.GetImageFromArray(dx_film.pixels[None].astype(np.float32))  # (z=1, rows, cols)
    volume.SetSpacing((COL_MM, ROW_MM, 2.5))
    sitk.WriteImage(volume, str(tmp_path / "slice.mha"))
    film = load_film(tmp_path / "slice.mha")
    assert film.shape == dx_film.shape and film.spacing == pytest.approx((ROW_MM, COL_MM))
    assert np.array_equal(film.pixels, dx_film.pixels) and film.facts["dimension"] == 3


def test_a_volume_of_several_slices_is_refused(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 20, 30), np.uint8)), str(tmp_path / "ct.nrrd"))
    with pytest.raises(UnsupportedImageError, match="3-D image of size 30 x 20 x 3, not one film"):
        load_film(tmp_path / "ct.nrrd")


def test_itk_default_spacing_is_unknown_and_user_spacing_replaces_it(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(600, dtype=np.uint16).reshape(20, 30)), str(tmp_path / "a.mha"))
    with pytest.warns(SpacingWarning, match="what ITK writes when no spacing is set"):
        film = load_film(tmp_path / "a.mha")
    assert film.spacing is None and film.spacing_source == "unknown"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert load_film(tmp_path / "a.mha", spacing="0.2").spacing == (0.2, 0.2)


def test_direction_gives_the_patient_orientation(dx_film, tmp_path):
    image = itk_image(dx_film.pixels)
    image.SetDirection((-1.0, 0.0, 0.0, 1.0))  # columns run toward the patient's right: a mirrored film
    sitk.WriteImage(image, str(tmp_path / "mirrored.mha"))
    film = load_film(tmp_path / "mirrored.mha")
    assert film.orientation == ("R", "P") and film.facts["direction"] == [-1.0, 0.0, 0.0, 1.0]


def test_film_from_a_simpleitk_image_in_memory(dx_film):
    film = film_from_itk(itk_image(dx_film.pixels))
    assert film.spacing == pytest.approx((ROW_MM, COL_MM)) and np.array_equal(film.pixels, dx_film.pixels)


@pytest.mark.slow
def test_predict_on_an_mha_film_writes_an_mha_label_map(dx_film, tmp_path, segmenter, shipped_bundle):
    """A real film as MHA in (its own anisotropic spacing), the label map as MHA out: same grid, spacing, labels."""
    import nibabel

    row_mm, col_mm = dx_film.spacing  # 1.2 x 1.2012 mm
    (tmp_path / "in").mkdir()
    sitk.WriteImage(itk_image(dx_film.pixels, (col_mm, row_mm)), str(tmp_path / "in" / "dx.mha"))
    result = CliRunner().invoke(
        cli,
        [
            "predict",
            str(tmp_path / "in"),
            "-o",
            str(tmp_path / "out"),
            "--bundle",
            str(shipped_bundle),
            "--device",
            "cpu",
            "--format",
            "mha,nifti",
        ],
        obj={},
    )
    assert result.exit_code == 0, result.output
    written = sitk.ReadImage(str(tmp_path / "out" / "dx_labels.mha"))
    labels = sitk.GetArrayFromImage(written)
    assert written.GetSpacing() == pytest.approx((col_mm, row_mm)) and labels.dtype == np.uint8
    nifti = np.asarray(nibabel.load(str(tmp_path / "out" / "dx_labels.nii.gz")).dataobj)[:, :, 0]
    assert labels.shape == dx_film.shape and np.array_equal(labels, nifti) and set(np.unique(labels)) == {0, 1, 2}
    # the same labels as the DICOM film (same pixels and spacing; PatientOrientation L\F = ITK's default display)
    assert np.array_equal(labels, segmenter(dx_film).labels)
    back = load_film(tmp_path / "out" / "dx_labels.mha")  # medlung reads its own output with the spacing
    assert back.spacing == pytest.approx((row_mm, col_mm)) and np.array_equal(back.pixels, labels)


@pytest.mark.skipif(
    importlib.util.find_spec("itk") is None, reason="the itk package (extra [itk], about 1.5 GB) is not installed"
)
def test_itk_package_round_trip(dx_film, segmenter):
    import itk

    image = itk.image_from_array(dx_film.pixels.astype(np.float32))
    image.SetSpacing((COL_MM, ROW_MM))
    film = film_from_itk(image)
    assert film.spacing == pytest.approx((ROW_MM, COL_MM)) and np.array_equal(film.pixels, dx_film.pixels)
    masks = segmenter(film)
    labels = masks.to_itk()
    assert tuple(labels.GetSpacing()) == pytest.approx((COL_MM, ROW_MM))
    assert np.array_equal(itk.array_from_image(labels), masks.labels)

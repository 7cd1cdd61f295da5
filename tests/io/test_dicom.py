"""DICOM films: every shared file, generated CR/DX films, LUTs, polarity, spacing, bad files."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless, RLELossless

import medlung
from medlung.errors import MedlungError, PixelDecodeError, SpacingWarning, UnreadableFileError, UnsupportedImageError
from tests import dicom_factory as factory

# What each file in ../shared/data/dicom must yield:
# (rows, cols), spacing (row_mm, col_mm), spacing source, photometric, shown inverted, VOI applied.
SHARED_EXPECTED = {
    "CR-MONO1-10-chest.dcm": ((440, 440), None, "unknown", "MONOCHROME1", True, "window 550/1024"),
    "CR-MONO1-10-chest_RLE.dcm": ((440, 440), None, "unknown", "MONOCHROME1", True, "window 550/1024"),
    "RG1_J2KI.dcm": ((1955, 1841), None, "unknown", "MONOCHROME1", True, "window 15000/30000"),
    "RG1_JLSN.dcm": ((1955, 1841), None, "unknown", "MONOCHROME1", True, "window 15000/30000"),
    "RG2_JPLL.dcm": ((2140, 1760), (0.2, 0.2), "PixelSpacing", "MONOCHROME2", False, "window 511/1024"),
    "CR-ModalitySequenceLUT.dcm": ((1576, 1976), (0.15, 0.15), "PixelSpacing", "MONOCHROME1", True, None),
    "dx_image.dcm": ((169, 211), (1.2, 1.201199999999), "PixelSpacing", "MONOCHROME1", True, "window 128/256"),
    "CR1_6154.dcm": ((16, 16), (0.1, 0.1), "ImagerPixelSpacing", "MONOCHROME1", True, "window 1600/2800"),
    "vlut_04.dcm": ((512, 512), None, "unknown", "MONOCHROME2", False, "VOI LUT Sequence"),
}


@pytest.mark.parametrize("name", sorted(SHARED_EXPECTED))
def test_every_shared_film_loads_with_the_right_facts(shared_dicom, name):
    shape, spacing, source, photometric, inverted, voi = SHARED_EXPECTED[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        film = medlung.load_film(shared_dicom / name)
    assert film.shape == shape
    assert film.pixels.dtype == np.float32
    assert film.spacing == spacing
    assert film.spacing_source == source
    assert film.photometric == photometric
    assert film.facts["inverted"] is inverted
    assert film.facts["voi"] == voi
    assert np.isfinite(film.pixels).all()
    assert film.pixels.std() > 0
    assert "PixelData" not in film.dataset  # the header is kept, not a second copy of the pixels


def test_zero_pixel_spacing_is_unknown_not_zero(shared_dicom):
    with pytest.warns(SpacingWarning, match=r"PixelSpacing is not positive.*0\.000"):
        film = medlung.load_film(shared_dicom / "RG1_J2KI.dcm")
    assert film.spacing is None and film.spacing_source == "unknown"
    assert any("PixelSpacing" in w for w in film.warnings)


def test_segmentation_object_is_refused_with_a_one_line_message(shared_dicom):
    path = shared_dicom / "seg_image_cr_binary.dcm"
    with pytest.raises(UnsupportedImageError) as caught:
        medlung.load_film(path)
    message = str(caught.value)
    assert str(path) in message and "Segmentation Storage" in message and "\n" not in message


@pytest.mark.parametrize("name", ["RG2_JPLL.dcm", "RG1_JLSN.dcm", "CR1_6154.dcm", "vlut_04.dcm", "dx_image.dcm"])
def test_pixels_match_pydicoms_own_pipeline(shared_dicom, name):
    ds = pydicom.dcmread(shared_dicom / name)
    values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds, index=0).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        film = medlung.load_film(shared_dicom / name)
    if film.facts["inverted"]:
        low, high = film.value_range
        values = low + high - values
    np.testing.assert_allclose(film.pixels, values, rtol=1e-6, atol=1e-3)


def test_monochrome1_film_is_shown_with_dense_tissue_bright(shared_dicom):
    # The mediastinum (centre column band) is denser than the lungs beside it.
    film = medlung.load_film(shared_dicom / "CR-MONO1-10-chest.dcm")
    rows = slice(120, 300)
    centre = film.pixels[rows, 200:240].mean()
    lungs = np.r_[film.pixels[rows, 90:150].ravel(), film.pixels[rows, 290:350].ravel()].mean()
    assert centre > lungs + 100


def test_no_file_meta_and_rle_copies_give_identical_films(shared_dicom):
    plain = medlung.load_film(shared_dicom / "CR-MONO1-10-chest.dcm")
    rle = medlung.load_film(shared_dicom / "CR-MONO1-10-chest_RLE.dcm")
    assert plain.facts["transfer_syntax"].startswith("Implicit VR Little Endian")
    assert rle.facts["transfer_syntax"].startswith("RLE Lossless")
    np.testing.assert_array_equal(plain.pixels, rle.pixels)


def test_monochrome1_and_its_monochrome2_inverse_give_the_same_film(tmp_path, shenzhen_pixels):
    mono2 = shenzhen_pixels.astype(np.uint16) * 4  # 10-bit values
    mono1 = (1023 - mono2).astype(np.uint16)
    a = medlung.load_film(factory.write(factory.radiograph(mono2, bits_stored=10), tmp_path / "m2.dcm"))
    b = medlung.load_film(
        factory.write(factory.radiograph(mono1, photometric="MONOCHROME1", bits_stored=10), tmp_path / "m1.dcm")
    )
    np.testing.assert_array_equal(a.pixels, b.pixels)
    np.testing.assert_array_equal(a.pixels, mono2.astype(np.float32))


def test_presentation_lut_inverse_inverts_a_monochrome2_film(tmp_path):
    stored = np.arange(64, dtype=np.uint8).reshape(8, 8)
    ds = factory.radiograph(stored, factory.DX_PRESENTATION, PresentationLUTShape="INVERSE")
    film = medlung.load_film(factory.write(ds, tmp_path / "inv.dcm"))
    np.testing.assert_array_equal(film.pixels, 255.0 - stored)


def test_rescale_modality_lut_is_applied(tmp_path):
    stored = np.arange(100, dtype=np.uint16).reshape(10, 10)
    ds = factory.radiograph(stored, bits_stored=12, RescaleSlope=2, RescaleIntercept=-10)
    film = medlung.load_film(factory.write(ds, tmp_path / "rescale.dcm"))
    np.testing.assert_array_equal(film.pixels, stored * 2.0 - 10)
    assert film.value_range == (-10.0, 4095 * 2.0 - 10)


@pytest.mark.parametrize(
    "sop_class", [factory.CR, factory.DX_PRESENTATION, factory.DX_PROCESSING, factory.SECONDARY_CAPTURE]
)
def test_cr_dx_and_secondary_capture_classes_load(tmp_path, sop_class):
    stored = np.random.default_rng(0).integers(0, 4096, (20, 30), dtype=np.uint16)
    film = medlung.load_film(factory.write(factory.radiograph(stored, sop_class, bits_stored=12), tmp_path / "f.dcm"))
    assert film.shape == (20, 30)
    np.testing.assert_array_equal(film.pixels, stored)


def test_film_without_file_meta_loads(tmp_path):
    stored = np.random.default_rng(1).integers(0, 1024, (12, 9), dtype=np.uint16)
    path = factory.write(factory.radiograph(stored, bits_stored=10), tmp_path / "nometa.dcm", file_meta=False)
    assert path.read_bytes()[128:132] != b"DICM"
    film = medlung.load_film(path)
    np.testing.assert_array_equal(film.pixels, stored)
    assert film.facts["transfer_syntax"].startswith("Implicit VR Little Endian")


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_compressed_syntaxes_decode_losslessly(tmp_path, shenzhen_pixels, syntax):
    stored = shenzhen_pixels.astype(np.uint16) * 16
    path = factory.write(factory.radiograph(stored, bits_stored=12), tmp_path / "c.dcm", syntax)
    film = medlung.load_film(path)
    assert film.facts["transfer_syntax"].startswith(syntax.name)
    np.testing.assert_array_equal(film.pixels, stored)


def test_jpeg_baseline_film_decodes_close_to_the_source(tmp_path, shenzhen_pixels):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(shenzhen_pixels).save(buffer, format="JPEG", quality=95)
    ds = factory.radiograph(shenzhen_pixels)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(tmp_path / "jpeg.dcm", enforce_file_format=True)
    film = medlung.load_film(tmp_path / "jpeg.dcm")
    assert film.shape == shenzhen_pixels.shape
    assert np.abs(film.pixels - shenzhen_pixels).mean() < 2.0


@pytest.mark.parametrize(
    "attributes, spacing, source",
    [
        ({"PixelSpacing": [0.1, 0.2]}, (0.1, 0.2), "PixelSpacing"),
        ({"ImagerPixelSpacing": [0.15, 0.16]}, (0.15, 0.16), "ImagerPixelSpacing"),
        ({"NominalScannedPixelSpacing": [0.3, 0.25]}, (0.3, 0.25), "NominalScannedPixelSpacing"),
        (
            {"ImagerPixelSpacing": [0.15, 0.18], "EstimatedRadiographicMagnificationFactor": 1.2},
            (0.125, 0.15),
            "ImagerPixelSpacing",
        ),
        ({"PixelSpacing": [0.1, 0.1], "ImagerPixelSpacing": [0.2, 0.2]}, (0.1, 0.1), "PixelSpacing"),
        ({}, None, "unknown"),
    ],
)
def test_spacing_sources_in_order(tmp_path, attributes, spacing, source):
    ds = factory.radiograph(np.zeros((4, 6), np.uint8), factory.DX_PRESENTATION, **attributes)
    film = medlung.load_film(factory.write(ds, tmp_path / "s.dcm"))
    assert film.spacing_source == source
    if spacing is None:
        assert film.spacing is None
    else:
        assert film.spacing == pytest.approx(spacing)


@pytest.mark.parametrize("bad", ["0\\0", "-0.1\\0.1", "nan\\0.1", "0.1", "abc\\def", "inf\\0.2"])
def test_invalid_spacing_is_warned_about_and_skipped(tmp_path, bad):
    ds = factory.radiograph(np.zeros((4, 6), np.uint8), ImagerPixelSpacing=[0.14, 0.15])
    ds.add_new("PixelSpacing", "DS", None)
    ds["PixelSpacing"]._value = bad  # raw text, as a broken modality would write it
    path = tmp_path / "bad.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's own DS validation warnings
        ds.save_as(path, enforce_file_format=True)
    with pytest.warns(SpacingWarning, match="PixelSpacing"):
        film = medlung.load_film(path)
    assert film.spacing == (0.14, 0.15) and film.spacing_source == "ImagerPixelSpacing"
    assert all(math.isfinite(v) and v > 0 for v in film.spacing)


def test_invalid_magnification_factor_is_not_used(tmp_path):
    ds = factory.radiograph(
        np.zeros((4, 6), np.uint8), ImagerPixelSpacing=[0.15, 0.15], EstimatedRadiographicMagnificationFactor=0
    )
    with pytest.warns(SpacingWarning, match="EstimatedRadiographicMagnificationFactor"):
        film = medlung.load_film(factory.write(ds, tmp_path / "m.dcm"))
    assert film.spacing == (0.15, 0.15)


def test_anisotropic_full_size_film_keeps_rows_and_columns(tmp_path):
    # 4020 wide, 4892 high: stored as (rows=4892, cols=4020); row spacing 0.1, column spacing 0.0875.
    stored = np.zeros((4892, 4020), np.uint16)
    stored[:100, :] = 1000  # a band along the top rows
    ds = factory.radiograph(stored, factory.DX_PRESENTATION, bits_stored=12, PixelSpacing=[0.1, 0.0875])
    film = medlung.load_film(factory.write(ds, tmp_path / "aniso.dcm"))
    assert film.shape == (4892, 4020)
    assert film.spacing == (0.1, 0.0875)
    assert film.pixels[:100].min() == 1000 and film.pixels[100:].max() == 0


@pytest.fixture(scope="module")
def full_resolution_film(tmp_path_factory, shenzhen_pixels):
    """A real Shenzhen film upsampled to 4020x4892 (WxH), 12-bit, 0.0875 mm, as DX."""
    from PIL import Image

    big = np.asarray(Image.fromarray(shenzhen_pixels).resize((4020, 4892), Image.BILINEAR)).astype(np.uint16) * 16
    folder = tmp_path_factory.mktemp("fullres")
    paths = {}
    for name, syntax in (("raw", None), ("j2k", JPEG2000Lossless)):
        ds = factory.radiograph(big, factory.DX_PRESENTATION, bits_stored=12, PixelSpacing=[0.0875, 0.0875])
        paths[name] = factory.write(ds, folder / f"{name}.dcm", syntax)
    return big, paths


@pytest.mark.parametrize("name", ["raw", "j2k"])
def test_full_resolution_16_bit_film(full_resolution_film, name):
    big, paths = full_resolution_film
    film = medlung.load_film(paths[name])
    assert film.shape == (4892, 4020)
    assert film.spacing == (0.0875, 0.0875) and film.spacing_source == "PixelSpacing"
    np.testing.assert_array_equal(film.pixels, big)


def _non_image(tmp_path, sop_class: str) -> Dataset:
    ds = factory.radiograph(np.zeros((2, 2), np.uint8), sop_class)
    del ds.PixelData
    return factory.write(ds, tmp_path / "nonimage.dcm")


@pytest.mark.parametrize(
    "sop_class, name",
    [
        ("1.2.840.10008.5.1.4.1.1.88.11", "Basic Text SR"),
        ("1.2.840.10008.5.1.4.1.1.11.1", "Grayscale Softcopy Presentation State"),
        ("1.2.840.10008.5.1.4.1.1.2", "CT Image Storage"),
    ],
)
def test_non_radiograph_objects_are_refused(tmp_path, sop_class, name):
    path = _non_image(tmp_path, sop_class)
    with pytest.raises(UnsupportedImageError, match=name):
        medlung.load_film(path)


def test_multi_frame_film_is_refused(tmp_path):
    ds = factory.radiograph(np.zeros((4, 4), np.uint8), NumberOfFrames=2)
    ds.PixelData = np.zeros((2, 4, 4), np.uint8).tobytes()
    with pytest.raises(UnsupportedImageError, match=r"multi-frame image \(2 frames\)"):
        medlung.load_film(factory.write(ds, tmp_path / "mf.dcm"))


def test_colour_film_is_refused(tmp_path):
    ds = factory.radiograph(np.zeros((4, 4), np.uint8), factory.SECONDARY_CAPTURE, photometric="RGB")
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    ds.PixelData = np.zeros((4, 4, 3), np.uint8).tobytes()
    with pytest.raises(UnsupportedImageError, match="colour image"):
        medlung.load_film(factory.write(ds, tmp_path / "rgb.dcm"))


def test_truncated_dicom_is_refused_naming_the_file(tmp_path, shared_dicom):
    data = (shared_dicom / "RG2_JPLL.dcm").read_bytes()
    path = tmp_path / "truncated.dcm"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableFileError) as caught:
        medlung.load_film(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_truncated_uncompressed_pixel_data_is_a_decode_error(tmp_path):
    stored = np.zeros((64, 64), np.uint16)
    path = factory.write(factory.radiograph(stored), tmp_path / "t.dcm")
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(PixelDecodeError, match="pixel data could not be decoded"):
        medlung.load_film(path)


@pytest.mark.parametrize("content", [b"", b"hello, not a film\n" * 10, bytes(range(256)) * 40])
def test_empty_text_and_random_files_are_refused(tmp_path, content):
    rng = np.random.default_rng(len(content))
    path = tmp_path / "junk.dcm"
    path.write_bytes(content if content else b"")
    if len(content) > 1000:
        path.write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(MedlungError) as caught:
        medlung.load_film(path)
    assert str(path) in str(caught.value)


def test_missing_file_and_folder_are_refused(tmp_path):
    with pytest.raises(UnreadableFileError, match="file not found"):
        medlung.load_film(tmp_path / "nope.dcm")
    with pytest.raises(UnreadableFileError, match="is a folder"):
        medlung.load_film(tmp_path)


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize("bits", [8, 12, 16])
def test_films_without_luts_are_exact_in_float32(tmp_path, photometric, bits):
    """Integer films without rescale or window go to float32 in one step; the values are the float64 route's."""
    rng = np.random.default_rng(bits)
    dtype = np.uint8 if bits == 8 else np.uint16
    stored = rng.integers(0, 2**bits, (40, 50)).astype(dtype)
    stored[0, :2] = 0, 2**bits - 1  # both ends of the range
    path = factory.write(
        factory.radiograph(stored, factory.DX_PRESENTATION, photometric, bits_stored=bits), tmp_path / "film.dcm"
    )
    film = medlung.load_film(path)
    expected = stored.astype(np.float64)
    if photometric == "MONOCHROME1":
        expected = (2**bits - 1) - expected
    assert film.pixels.dtype == np.float32 and film.pixels.flags.c_contiguous
    assert np.array_equal(film.pixels, expected.astype(np.float32))

"""Reduced-resolution decoding (#30): the same answers as decoding every pixel, on full-resolution films.

The films imitate a Montgomery original: a real shared Montgomery film
upsampled to 4020 x 4892 (WxH) at 0.0875 mm, in each syntax whose reduced
decode differs (JPEG 2000 and HTJ2K: resolution levels; JPEG baseline: DCT
scaling; JPEG lossless and uncompressed: area averages of the stored
values). Tolerances: the working-grid image (before intensity scaling)
differs from the full decode's by at most 0.5 % of its range on average and
5 % at its 99.9th percentile; the masks' Dice is at least 0.998.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, HTJ2KLossless, JPEG2000Lossless, JPEGBaseline8Bit, JPEGLosslessSV1

import medlung
from medlung.io import reduce
from medlung.io.codestreams import parse
from tests import dicom_factory as factory
from tests.conftest import dice

SYNTAXES = ("j2k", "htj2k", "jpeg-lossless", "jpeg-baseline", "uncompressed")
#: Largest mean and 99.9th-percentile difference of the working-grid image, fractions of its range.
MEAN_TOLERANCE, P999_TOLERANCE = 0.005, 0.05
MIN_DICE = 0.998


def _encode(stored: np.ndarray, syntax: str) -> tuple[bytes, str]:
    import imagecodecs

    if syntax == "j2k":
        return bytes(imagecodecs.jpeg2k_encode(stored, level=0, codecformat="J2K", reversible=True)), JPEG2000Lossless
    if syntax == "htj2k":
        return bytes(imagecodecs.htj2k_encode(stored, level=0)), HTJ2KLossless
    if syntax == "jpeg-lossless":
        return bytes(imagecodecs.ljpeg_encode(stored, bitspersample=12)), JPEGLosslessSV1
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue(), JPEGBaseline8Bit


@pytest.fixture(scope="module")
def films(shared_data, tmp_path_factory):
    """Path of a 4020 x 4892 film at 0.0875 mm per syntax, from a real Montgomery film."""
    small = Image.open(shared_data / "montgomery" / "images" / "MCUCXR_0003_0.png").convert("L")
    big8 = np.asarray(small.resize((4020, 4892), Image.BICUBIC))
    big12 = (big8.astype(np.uint16) * 16) | (big8 >> 4)
    folder = tmp_path_factory.mktemp("fullres")
    paths = {}
    for syntax in SYNTAXES:
        stored = big8 if syntax == "jpeg-baseline" else big12
        bits = 8 if syntax == "jpeg-baseline" else 12
        ds = factory.radiograph(
            stored,
            factory.DX_PRESENTATION,
            bits_stored=bits,
            PixelSpacing=[0.0875, 0.0875],
            PatientOrientation=["L", "F"],
            WindowCenter=(1 << bits) // 2,
            WindowWidth=(1 << bits) - 200,
        )
        if syntax != "uncompressed":
            frame, uid = _encode(stored, syntax)
            ds.file_meta.TransferSyntaxUID = uid
            ds.PixelData = encapsulate([frame])
            ds["PixelData"].VR = "OB"
            ds["PixelData"].is_undefined_length = True
        else:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        paths[syntax] = factory.write(ds, folder / f"{syntax}.dcm")
    return paths


def test_the_generated_films_are_what_they_say(films):
    kinds = {"j2k": "j2k", "htj2k": "htj2k", "jpeg-lossless": "jpeg", "jpeg-baseline": "jpeg"}
    for syntax, kind in kinds.items():
        film = medlung.load_film(films[syntax], decode="header")
        stream = film.source.stream
        assert stream.kind == kind and (stream.rows, stream.cols) == (4892, 4020), syntax
    assert parse(medlung.load_film(films["j2k"], decode="header").source.frame).levels >= 4


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_native_shape_and_spacing_come_from_the_header_without_decoding(films, syntax):
    film = medlung.load_film(films[syntax], decode="header")
    assert film.shape == (4892, 4020) and (film.rows, film.cols) == (4892, 4020)
    assert film.spacing == (0.0875, 0.0875) and film.spacing_source == "PixelSpacing"
    assert not film.pixels_decoded
    assert film.facts["voi"].startswith("window")


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_reduced_decode_gives_the_full_decodes_answers(films, syntax, segmenter):
    """Working-grid image within tolerance, Dice >= 0.998, native pixels still the full decode's on access."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = medlung.load_film(films[syntax])
        reduced = medlung.load_film(films[syntax], decode="reduced", preview_side=2048)
    assert not reduced.pixels_decoded
    reference = segmenter.working_image(full).as_tensor()[0].numpy()
    working = segmenter.working_image(reduced).as_tensor()[0].numpy()
    assert working.shape == reference.shape
    span = float(reference.max() - reference.min())
    difference = np.abs(working - reference) / span
    print(f"\n{syntax}: mean {difference.mean():.5f}, p99.9 {np.percentile(difference, 99.9):.4f} of the range")
    assert difference.mean() <= MEAN_TOLERANCE and np.percentile(difference, 99.9) <= P999_TOLERANCE
    a, b = segmenter(full).labels, segmenter(reduced).labels
    assert a.shape == b.shape == (4892, 4020)
    score = dice(a > 0, b > 0)
    print(f"{syntax}: Dice {score:.5f}")
    assert score >= MIN_DICE
    assert not reduced.pixels_decoded  # segmenting did not need the native pixels
    if syntax in ("uncompressed", "j2k"):
        np.testing.assert_array_equal(reduced.pixels, full.pixels)  # decoded on access, the same pixels
        assert reduced.pixels_decoded


def test_predict_decode_full_writes_the_masks_of_a_full_decode(films, segmenter, tmp_path):
    """``--decode full`` is the path before #30: the masks of Segmenter()(load_film(path))."""
    from medlung.pipeline.batch import predict_files
    from medlung.pipeline.settings import PredictSettings

    report = predict_files(
        [films["j2k"]], tmp_path, segmenter, PredictSettings(formats=("png",), decode="full", overwrite=True)
    )
    assert report.rows[0]["status"] == "ok"
    written = np.asarray(Image.open(tmp_path / "j2k_lungs.png")) > 0
    assert np.array_equal(written, segmenter(medlung.load_film(films["j2k"])).labels > 0)


def test_area_average_is_interpolate_area_strip_by_strip():
    import torch

    rng = np.random.default_rng(3)
    for shape, outs in (((517, 403), [(23, 19), (205, 167)]), ((37, 1000), [(5, 999), (37, 3)])):
        stored = rng.integers(0, 4096, shape).astype(np.uint16)
        got = reduce.area_average(stored, outs, lambda s: s.astype(np.float32), strip_rows=50)
        for out, image in zip(outs, got):
            tensor = torch.from_numpy(stored.astype(np.float32))[None, None]
            expected = torch.nn.functional.interpolate(tensor, size=out, mode="area")[0, 0].numpy()
            np.testing.assert_allclose(image, expected, rtol=1e-5, atol=1e-3)


def test_box_weights_average_a_level_back_to_the_film():
    """A constant film stays constant, and a ramp's reduced samples land where the codec puts them."""
    native, scale, out = 1004, 8, 100
    ramp = np.arange(native, dtype=np.float64) + 0.5  # each pixel's centre, edge coordinates
    whole = native - native % scale
    jpeg = np.append(ramp[:whole].reshape(-1, scale).mean(1), ramp[whole:].mean())  # DCT scaling: block means
    weights = reduce.box_weights(native, out, scale, reduce.BOX_OFFSET["jpeg"](scale))
    centres = (np.arange(out) + 0.5) * native / out
    # each output pixel's mean of the ramp, up to a box's resolution, and no shift on average
    error = weights @ jpeg - centres
    assert np.abs(error).max() <= scale / 2 and abs(error.mean()) < 0.05
    np.testing.assert_allclose(np.asarray(weights.sum(axis=1)).ravel(), 1)
    j2k = ramp[::scale]  # the low band at even positions: sample k centred on pixel scale * k
    weights = reduce.box_weights(native, out, scale, reduce.BOX_OFFSET["j2k"](scale))
    error = (weights @ j2k - centres)[1:-1]  # the ends: boxes clipped at the film's edge
    assert np.abs(error).max() <= scale / 2 and abs(error.mean()) < 0.05  # without the offset: 3.5 px off
    level = reduce.coarsest_level((4892, 4020), (214, 176), 5)
    assert level == 4 and reduce.reduced_size(4892, level) >= 214 > reduce.reduced_size(4892, level + 1)

"""The JPEG 2000 decoder medlung uses by default (imagecodecs, threaded) gives pydicom's pixels, bit for bit."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PIL import Image

from tests import dicom_factory as factory

pytest.importorskip("imagecodecs", reason="imagecodecs is what medlung decodes JPEG 2000 with")

from medlung.io import j2k


def _both(path):
    reference = pydicom.pixels.pixel_array(path, decoding_plugin="pylibjpeg")
    ours = pydicom.pixels.pixel_array(path, decoding_plugin=j2k.PLUGIN)
    return reference, ours


@pytest.fixture(scope="module", autouse=True)
def registered():
    assert j2k.register()


def test_shared_jpeg2000_film_decodes_bit_identical(shared_dicom):
    path = shared_dicom / "RG1_J2KI.dcm"  # real CR chest, JPEG 2000 (lossy), 15 bits stored
    reference, ours = _both(path)
    assert ours.dtype == reference.dtype and ours.shape == reference.shape == (1955, 1841)
    assert np.array_equal(ours, reference)


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_lossless_films_decode_bit_identical_and_as_stored(shenzhen_pixels, tmp_path, bits):
    big = np.asarray(Image.fromarray(shenzhen_pixels).resize((900, 1100), Image.BICUBIC))
    stored = (big.astype(np.uint16) * ((1 << bits) - 1) // 255).astype(np.uint8 if bits == 8 else np.uint16)
    ds = factory.radiograph(stored, factory.DX_PRESENTATION, bits_stored=bits, PixelSpacing=[0.1, 0.1])
    path = factory.write(ds, tmp_path / f"film{bits}.dcm", factory.JPEG2000Lossless)
    reference, ours = _both(path)
    assert np.array_equal(ours, reference) and ours.dtype == reference.dtype
    assert np.array_equal(ours, stored)  # lossless: the stored values themselves


@pytest.mark.filterwarnings("ignore::UserWarning")  # RG1 declares a PixelSpacing of 0 (ignored, on purpose)
def test_load_film_uses_it_first_and_gives_the_same_film(shared_dicom):
    from pydicom.pixels.decoders import base

    import medlung

    film = medlung.load_film(shared_dicom / "RG1_J2KI.dcm")
    assert next(iter(base.get_decoder(pydicom.uid.JPEG2000)._available)) == j2k.PLUGIN
    reference = pydicom.pixels.pixel_array(shared_dicom / "RG1_J2KI.dcm", decoding_plugin="pylibjpeg")
    assert film.pixels.shape == reference.shape
    assert j2k.threads() >= 1

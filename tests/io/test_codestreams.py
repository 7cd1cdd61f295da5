"""The codestream's own header, read before decoding: real files, and each way it can disagree with the DICOM header."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from pydicom.encaps import generate_frames

import medlung
from medlung.errors import MedlungError, UnreadableFileError
from medlung.io.codestreams import CodestreamError, Declared, check_frame, parse, rle_segments
from medlung.io.cost import declared_cost
from medlung.io.dicom import read_dicom_dataset
from medlung.io.files import detached_file, open_regular
from tests.hostile import corpus

#: Shared file -> (kind, rows, cols, bits, JPEG process) of its codestream.
SHARED = {
    "RG1_J2KI.dcm": ("j2k", 1955, 1841, 15, None),
    "RG1_JLSN.dcm": ("jpeg-ls", 1955, 1841, 15, 0xF7),
    "RG2_JPLL.dcm": ("jpeg", 2140, 1760, 10, 0xC3),
    "CR-ModalitySequenceLUT.dcm": ("jpeg", 1576, 1976, 10, 0xC3),
}


def _frame(path) -> bytes:
    return next(generate_frames(read_dicom_dataset(path).PixelData, number_of_frames=1))


@pytest.mark.parametrize("name", sorted(SHARED))
def test_real_codestreams_declare_the_headers_size(shared_dicom, name):
    kind, rows, cols, bits, process = SHARED[name]
    stream = parse(_frame(shared_dicom / name))
    assert (stream.kind, stream.rows, stream.cols, stream.components) == (kind, rows, cols, 1)
    assert stream.bits >= bits - 1 and stream.process == process
    if kind == "j2k":
        assert stream.levels >= 1


def test_rle_segments_of_a_real_file(shared_dicom):
    segments = rle_segments(_frame(shared_dicom / "CR-MONO1-10-chest_RLE.dcm"))
    assert len(segments) == 2 and segments[0][0] == 64  # 16-bit grey: two byte planes


def test_each_disagreement_is_a_sentence():
    declared = Declared(rows=512, cols=512, samples=1, bits_allocated=8, bits_stored=8)
    sof = b"\xff\xd8\xff\xc0" + struct.pack(">HBHHB", 11, 8, 512, 512, 1) + b"\x01\x11\x00"
    assert check_frame(sof, "jpeg", declared, 64_000_000).rows == 512
    cases = {
        "declares 1024 x 512 pixels but the DICOM header 512 x 512": sof.replace(
            b"\x02\x00\x02\x00", b"\x04\x00\x02\x00"
        ),
        "3 components": sof[:-4] + b"\x03" + sof[-3:],
        "no JPEG frame header": b"\xff\xd8\xff\xda\x00\x02",
        "no JPEG or JPEG 2000 codestream": b"\x00\x01\x02\x03",
        "DNL": sof.replace(b"\x02\x00\x02\x00", b"\x00\x00\x02\x00"),
    }
    for message, frame in cases.items():
        with pytest.raises(CodestreamError, match=message):
            check_frame(frame, "jpeg", declared, 64_000_000)
    with pytest.raises(CodestreamError, match="more than the limit of 100"):
        check_frame(sof, "jpeg", declared, 100)
    with pytest.raises(CodestreamError, match="do not fit"):
        rle_segments(struct.pack("<16I", 2, 64, 32, *[0] * 13) + b"\0" * 64)


@pytest.mark.parametrize("case", ["jpeg_sof_bomb", "j2k_siz_bomb", "deflate_bomb"])
def test_bombs_are_refused_by_the_reader_and_by_the_cost_estimate(tmp_path, case):
    # a 400 MB element is past the inflate limit of 323 MB and quicker to make than the 3 GB one
    path = corpus.deflate_bomb(tmp_path, 400 << 20) if case == "deflate_bomb" else corpus.CASES[case](tmp_path)
    for read in (medlung.load_film, declared_cost):
        with pytest.raises(MedlungError, match="more than") as raised:
            read(path)
        assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_declared_cost_reads_only_the_header(shared_dicom):
    cost = declared_cost(shared_dicom / "RG1_J2KI.dcm")
    assert (cost.rows, cost.cols) == (1955, 1841)
    full = declared_cost(shared_dicom / "RG1_J2KI.dcm", decode="full")
    assert full.decode_bytes >= 1955 * 1841 * (2 + 4) > cost.decode_bytes
    assert full.total_bytes == full.decode_bytes + full.native_grid_bytes


def test_only_regular_files_are_opened(tmp_path):
    fifo = corpus.fifo(tmp_path)
    for path, kind in ((fifo, "FIFO"), ("/dev/zero", "character device"), (tmp_path, "folder")):
        with pytest.raises(UnreadableFileError, match=kind):
            open_regular(path)


def test_detached_data_files_stay_beside_their_header(tmp_path):
    header = tmp_path / "film.mhd"
    header.write_text("x")
    (tmp_path / "film.raw").write_bytes(b"\0" * 4)
    assert detached_file(header, "film.raw") == (tmp_path / "film.raw").resolve()
    (tmp_path / "link.raw").symlink_to("/etc/passwd")
    for name in ("/etc/passwd", "../film.raw", "link.raw"):
        with pytest.raises(UnreadableFileError, match="outside the header's folder"):
            detached_file(header, name)
    with pytest.raises(UnreadableFileError, match="outside"):
        medlung.load_film(corpus.metaimage_outside(tmp_path))


def test_a_png_holding_fewer_rows_than_declared_is_an_error(tmp_path):
    with pytest.raises(UnreadableFileError, match="holds 4 of 1000 rows"):
        medlung.load_film(corpus.png_partial_rows(tmp_path))


def test_the_grey_table_gives_the_pipelines_pixels_for_a_32_bit_film(tmp_path):
    """A 32-bit rescale + window film goes through the steps strip by strip: pydicom's values, no float64 copy."""
    from pydicom.pixels import apply_modality_lut, apply_windowing

    from tests import dicom_factory as factory

    stored = (np.arange(300 * 200, dtype=np.uint32).reshape(300, 200) * 97) % 900000 + 50000
    attributes = {"RescaleSlope": 0.5, "RescaleIntercept": -1000, "WindowCenter": 200000, "WindowWidth": 300000}
    ds = factory.radiograph(stored, factory.DX_PRESENTATION, bits_stored=32, **attributes)
    path = factory.write(ds, tmp_path / "wide.dcm")
    expected = apply_windowing(apply_modality_lut(stored, ds), ds).astype(np.float32)
    film = medlung.load_film(path)
    np.testing.assert_array_equal(film.pixels, expected)
    reduced = medlung.load_film(path, decode="reduced")
    np.testing.assert_array_equal(reduced.pixels, expected)

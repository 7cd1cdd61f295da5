"""Transfer syntaxes: what is proposed, the re-encoding, receivers that accept little or nothing, STOW-RS's 415.

The peers are real: pynetdicom storage SCPs that support only some
syntaxes, and small HTTP servers that answer STOW-RS as a strict DICOMweb
server would (415 for a syntax it does not take).
"""

from __future__ import annotations

import http.server
import io
import json
import subprocess
import threading
import warnings
from contextlib import contextmanager

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    SegmentationStorage,
)

import medlung
from medlung.pacs import send_cstore, stow_rs
from medlung.pacs.syntaxes import (
    FILM_SYNTAXES,
    NATIVE_SYNTAXES,
    choose_syntax,
    encode_file,
    presentation_contexts,
    receivable_syntaxes,
    reencode,
    send_order,
)
from medlung.writers.dicom_seg import write_dicom_seg
from tests import dicom_factory as factory
from tests.pacs.orthanc import free_port
from tests.pacs.receivers import assert_same_values
from tests.writers.seg_support import load, require_tool, two_lungs

EXPLICIT, IMPLICIT, DEFLATED = (
    str(ExplicitVRLittleEndian),
    str(ImplicitVRLittleEndian),
    str(DeflatedExplicitVRLittleEndian),
)
#: Lossy syntaxes: decoded close to the original, not equal. JPEG-LS near-lossless bounds each stored value's error
#: (here 2); the others are checked on the mean error (at most 2 % of the stored range: the right image, not noise).
NEAR_LOSSLESS_ERROR = 2
LOSSY = {str(JPEGLSNearLossless), str(JPEG2000), str(HTJ2K), str(JPEGBaseline8Bit), str(JPEGExtended12Bit)}


@pytest.fixture
def seg_and_film(tmp_path, shared_dicom):
    film_path = shared_dicom / "dx_image.dcm"
    film = load(film_path)
    seg = write_dicom_seg(film, two_lungs(film.shape), tmp_path / "dx_seg.dcm", model_version="syntaxes")
    return seg, film_path


@contextmanager
def scp(contexts: dict[str, list[str]]):
    """A pynetdicom storage SCP supporting only ``contexts`` (SOP class -> syntaxes); yields (port, arrivals)."""
    from pynetdicom import AE, evt

    arrivals: list[tuple[str, bytes]] = []

    def on_store(event):
        arrivals.append((str(event.context.transfer_syntax), event.encoded_dataset()))
        return 0x0000

    ae = AE(ae_title="PICKY")
    for sop_class, syntaxes in contexts.items():
        ae.add_supported_context(sop_class, syntaxes)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        yield port, arrivals
    finally:
        server.shutdown()


def test_send_order_and_contexts():
    assert send_order(EXPLICIT) == [EXPLICIT, IMPLICIT, DEFLATED]
    assert send_order(IMPLICIT) == [IMPLICIT, EXPLICIT, DEFLATED]
    assert send_order(str(JPEG2000Lossless)) == [str(JPEG2000Lossless), *NATIVE_SYNTAXES]
    assert send_order(str(ExplicitVRBigEndian)) == [str(ExplicitVRBigEndian)]  # pydicom would not byte-swap it
    assert choose_syntax(str(JPEG2000Lossless), {IMPLICIT, DEFLATED}) == IMPLICIT
    assert choose_syntax(EXPLICIT, {str(RLELossless)}) is None

    def dataset(sop_class, syntax):
        ds = pydicom.Dataset()
        ds.SOPClassUID = sop_class
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = syntax
        return ds

    sr = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR: any SOP class gets its own contexts
    contexts = presentation_contexts(
        [
            dataset(SegmentationStorage, EXPLICIT),
            dataset(factory.CR, str(JPEG2000Lossless)),
            dataset(factory.CR, IMPLICIT),
            dataset(sr, EXPLICIT),
        ]
    )
    assert contexts == [
        (str(SegmentationStorage), [EXPLICIT, IMPLICIT, DEFLATED]),
        (factory.CR, [str(JPEG2000Lossless)]),
        (factory.CR, [IMPLICIT, EXPLICIT, DEFLATED]),
        (sr, [EXPLICIT, IMPLICIT, DEFLATED]),
    ]


@pytest.mark.parametrize("syntax", [IMPLICIT, DEFLATED])
def test_reencoding_is_real_and_goes_back(seg_and_film, syntax):
    seg, _ = seg_and_film
    ours = pydicom.dcmread(seg)
    data = encode_file(ours, syntax)
    theirs = pydicom.dcmread(io.BytesIO(data))
    assert str(theirs.file_meta.TransferSyntaxUID) == syntax
    assert theirs.original_encoding == ((True, True) if syntax == IMPLICIT else (False, True))
    if syntax == DEFLATED:  # the data set after the File Meta is the explicit VR one, deflated: not a changed header
        import zlib

        body = zlib.decompress(data[_dataset_offset(data) :], -zlib.MAX_WBITS)
        explicit = encode_file(ours, EXPLICIT)
        assert body == explicit[_dataset_offset(explicit) :] and len(data) < len(explicit) / 2
    assert_same_values(ours, theirs)
    assert np.array_equal(theirs.pixel_array, ours.pixel_array)
    back = reencode(theirs, EXPLICIT)
    assert back.original_encoding == (False, True) and back.file_meta.TransferSyntaxUID == EXPLICIT
    assert_same_values(ours, back)
    assert pydicom.dcmread(seg) == ours  # the file is not touched


def _dataset_offset(data: bytes) -> int:
    """Where the data set starts in a DICOM file: after the preamble, DICM and the File Meta group."""
    meta = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta
    return 128 + 4 + 12 + int(meta.FileMetaInformationGroupLength)


def test_receiver_that_accepts_only_deflate_gets_the_data_set_deflated(seg_and_film):
    seg, film = seg_and_film
    with scp({str(SegmentationStorage): [DEFLATED], factory.DX_PRESENTATION: [DEFLATED]}) as (port, arrivals):
        results = send_cstore([seg, film], f"PICKY@127.0.0.1:{port}", retries=0)
    assert [r.ok for r in results] == [True, True], [r.message for r in results]
    assert [syntax for syntax, _ in arrivals] == [DEFLATED, DEFLATED]
    for (_, data), path in zip(arrivals, (seg, film)):
        theirs = pydicom.dcmread(io.BytesIO(data))
        assert_same_values(pydicom.dcmread(path), theirs)
        assert np.array_equal(theirs.pixel_array, pydicom.dcmread(path).pixel_array)


def test_receiver_that_accepts_none_of_the_syntaxes_gets_one_line_and_the_file_is_kept(seg_and_film):
    seg, film = seg_and_film
    before = seg.read_bytes()
    with scp({str(SegmentationStorage): [str(JPEGLSLossless)]}) as (port, arrivals):
        results = send_cstore([seg, film], f"PICKY@127.0.0.1:{port}", retries=2, backoff=0)
    assert not arrivals and [r.ok for r in results] == [False, False]
    seg_result, film_result = results
    assert seg_result.status == film_result.status == 0x0122 and seg_result.attempts == 1  # not retried
    assert "accepts Segmentation Storage (1.2.840.10008.5.1.4.1.1.66.4) in none of the transfer syntaxes" in (
        seg_result.message
    )
    assert "Explicit VR Little Endian, Implicit VR Little Endian, Deflated Explicit VR Little Endian" in (
        seg_result.message
    )
    assert "does not accept Digital X-Ray Image Storage - For Presentation" in film_result.message
    assert all("the file is kept" in r.message and "\n" not in r.message for r in results)
    assert seg.read_bytes() == before

    with scp({str(SegmentationStorage): [str(JPEGLSLossless)], factory.CR: [EXPLICIT]}) as (port, arrivals):
        mixed = send_cstore([seg], f"PICKY@127.0.0.1:{port}", retries=0)  # an association, but not for the SEG
    assert not mixed[0].ok and mixed[0].status == 0x0122 and "in none of the transfer syntaxes" in mixed[0].message


class StrictStow(http.server.BaseHTTPRequestHandler):
    """A STOW-RS server that takes only the syntaxes in ``server.accepts`` (415, or failure reason 0xC122, else).

    With ``refuse_with="silent"`` it answers a part that names its syntax with
    200 and nothing about the instance, and stores one that does not.
    """

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        boundary = self.headers["Content-Type"].split("boundary=")[1].strip('"')
        part = body.split(f"--{boundary}".encode())[1]
        head, _, data = part.partition(b"\r\n\r\n")
        data = data[: -len(b"\r\n")]
        part_type = head.decode().split("Content-Type:")[1].strip()
        self.server.parts.append((part_type, data))
        syntax = part_type.split("transfer-syntax=")[1] if "transfer-syntax=" in part_type else None
        if self.server.refuse_with == "silent":  # Orthanc's DICOMweb plugin 1.7: a part with a parameter is skipped
            if syntax is not None:
                return self._answer(200, b'{"00081198": {"vr": "SQ"}, "00081199": {"vr": "SQ"}}')
        elif syntax not in self.server.accepts:
            if self.server.refuse_with == 415:
                return self._answer(415, b"")
            item = {"00081150": {"vr": "UI", "Value": [_uid(data)]}, "00081197": {"vr": "US", "Value": [0xC122]}}
            return self._answer(409, json.dumps({"00081198": {"vr": "SQ", "Value": [item]}}).encode())
        uid = _uid(data)
        item = {"00081155": {"vr": "UI", "Value": [uid]}}
        self._answer(200, json.dumps({"00081199": {"vr": "SQ", "Value": [item]}}).encode())

    def _answer(self, status: int, content: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, *args):
        pass


def _uid(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


@contextmanager
def strict_stow(accepts: set, refuse_with: int | str = 415):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StrictStow)
    server.accepts, server.refuse_with, server.parts = accepts, refuse_with, []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()


@pytest.mark.parametrize("refuse_with", [415, 0xC122], ids=["http-415", "failure-reason-C122"])
def test_stow_gets_the_next_syntax_after_a_refusal(seg_and_film, refuse_with):
    seg, _ = seg_and_film
    with strict_stow({IMPLICIT}, refuse_with) as server:
        (result,) = stow_rs([seg], f"http://127.0.0.1:{server.server_port}/dicom-web", retries=0)
    assert result.ok and result.status == 200, result.message
    assert [t for t, _ in server.parts] == [
        f"application/dicom; transfer-syntax={EXPLICIT}",
        f"application/dicom; transfer-syntax={IMPLICIT}",
    ]
    stored = pydicom.dcmread(io.BytesIO(server.parts[-1][1]))
    assert stored.original_encoding == (True, True) and str(stored.file_meta.TransferSyntaxUID) == IMPLICIT
    assert_same_values(pydicom.dcmread(seg), stored)


def test_stow_server_that_skips_a_part_naming_its_syntax_gets_it_plain_and_the_next_files_at_once(seg_and_film):
    seg, film = seg_and_film
    with strict_stow(set(), "silent") as server:
        results = stow_rs([seg, film], f"http://127.0.0.1:{server.server_port}/dicom-web", retries=0)
    assert [r.ok for r in results] == [True, True] and [r.attempts for r in results] == [2, 1]
    assert [t for t, _ in server.parts] == [
        f"application/dicom; transfer-syntax={EXPLICIT}",
        "application/dicom",
        "application/dicom",
    ]
    assert server.parts[1][1] == server.parts[0][1] == seg.read_bytes()  # the file as written, twice


def test_stow_server_refusing_every_syntax_gets_one_line(seg_and_film):
    seg, _ = seg_and_film
    with strict_stow(set()) as server:
        (result,) = stow_rs([seg], f"http://127.0.0.1:{server.server_port}/dicom-web", retries=0)
    assert not result.ok and result.status == 415 and len(server.parts) == 3
    assert result.message.endswith(
        "accepts Segmentation Storage (1.2.840.10008.5.1.4.1.1.66.4) in none of the transfer syntaxes tried "
        "(Explicit VR Little Endian, Implicit VR Little Endian, Deflated Explicit VR Little Endian); the file is kept"
    )


# --- what the node accepts: every syntax in the list decodes -------------------------------------------------
def _encode(syntax: str, plain, path):
    """``plain`` (an uncompressed film) stored in ``syntax``, with the encoders at hand (pydicom, dcmtk, imagecodecs)."""
    ds = pydicom.dcmread(plain)
    if syntax in NATIVE_SYNTAXES:
        path.write_bytes(encode_file(ds, syntax))
    elif syntax == str(ExplicitVRBigEndian):  # dcmtk swaps the pixel bytes; pydicom would not
        subprocess.run([require_tool("dcmconv", "dcmtk"), "+tb", str(plain), str(path)], check=True, timeout=60)
    elif syntax in (str(JPEGLosslessSV1), str(JPEGLossless), str(JPEGBaseline8Bit), str(JPEGExtended12Bit)):
        option = {str(JPEGLosslessSV1): "+e1", str(JPEGLossless): "+el", str(JPEGBaseline8Bit): "+eb"}.get(
            syntax, "+ee"
        )
        subprocess.run([require_tool("dcmcjpeg", "dcmtk"), option, str(plain), str(path)], check=True, timeout=60)
    elif syntax in (str(HTJ2KLossless), str(HTJ2KLosslessRPCL), str(HTJ2K)):
        import imagecodecs
        from pydicom.encaps import encapsulate

        lossless = syntax != str(HTJ2K)
        stream = imagecodecs.htj2k_encode(ds.pixel_array, reversible=lossless)  # irreversible: the 9-7 wavelet
        ds.PixelData = encapsulate([stream])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(path, enforce_file_format=True)
    else:
        options = {str(JPEGLSNearLossless): {"jls_error": 2}, str(JPEG2000): {"j2k_cr": [5]}}.get(syntax, {})
        ds.compress(syntax, generate_instance_uid=False, **options)
        ds.save_as(path, enforce_file_format=True)
    assert str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID) == syntax
    return path


def test_every_syntax_the_node_accepts_is_one_medlung_decodes(tmp_path, shenzhen_pixels):
    assert receivable_syntaxes() == list(FILM_SYNTAXES)  # every decoder is installed (the [test] environment)
    pixels = np.asarray(shenzhen_pixels)[::4, ::4]  # 128 x 128
    films = {
        8: factory.write(factory.radiograph(pixels.copy(), factory.CR), tmp_path / "plain8.dcm"),
        12: factory.write(
            factory.radiograph((pixels.astype(np.uint16) * 16), factory.DX_PRESENTATION, bits_stored=12),
            tmp_path / "plain12.dcm",
        ),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = {bits: medlung.load_film(path).pixels for bits, path in films.items()}
        for syntax in FILM_SYNTAXES:
            bits = 8 if syntax == str(JPEGBaseline8Bit) else 12
            path = _encode(syntax, films[bits], tmp_path / f"{syntax}.dcm")
            got = medlung.load_film(path).pixels  # stored values as float32 (no LUT or window in these films)
            error = np.abs(got.astype(np.float64) - expected[bits])
            if syntax == str(JPEGLSNearLossless):
                assert error.max() <= NEAR_LOSSLESS_ERROR, syntax
            elif syntax in LOSSY:
                assert error.mean() <= 0.02 * 2**bits, f"{syntax}: mean error {error.mean():.1f}"
            else:
                assert error.max() == 0, f"{syntax} is lossless but the film differs by up to {error.max()}"

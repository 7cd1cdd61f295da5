"""A corpus of hostile inputs, generated small into a folder: one function per case, each returning the file's path.

Each case is one of issue #28's attacks on the readers (and a legitimate film
at the limit, which must still be segmented). The files are made here, in a
few seconds, never committed as binaries. The same files serve ``medlung
predict`` (tests/hostile/test_predict_hostile.py) and the DICOM node over
C-STORE: every case below that is a DICOM data set (``DICOM_CASES``) can be
sent as it is.

Usage::

    from tests.hostile import corpus
    path = corpus.jpeg_sof_bomb(tmp_path)          # one case
    for name, make in corpus.CASES.items(): ...    # all of them; corpus.EXPECTED[name] is "error" or "ok"

Run as a script to write them all into a folder: ``python -m tests.hostile.corpus OUT``.
"""

from __future__ import annotations

import copy
import io
import os
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from tests import dicom_factory as factory

#: The size every bomb's DICOM header declares.
HEADER_SIZE = 512


def _film(rows: int = HEADER_SIZE, cols: int = HEADER_SIZE, bits: int = 8) -> np.ndarray:
    pixels = factory.chest_pixels(rows, cols)
    return pixels if bits == 8 else (pixels.astype(np.uint16) << (bits - 8))


def _encapsulated(folder: Path, name: str, frame: bytes, syntax: str, bits: int = 8, **attributes) -> Path:
    """A CR data set whose header says HEADER_SIZE x HEADER_SIZE and whose one frame is ``frame``."""
    stored = np.zeros((HEADER_SIZE, HEADER_SIZE), np.uint8 if bits == 8 else np.uint16)
    ds = factory.radiograph(stored, factory.CR, bits_stored=bits, PixelSpacing=[0.7, 0.7], **attributes)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    path = Path(folder) / name
    ds.save_as(path, enforce_file_format=True)
    return path


def _patch_jpeg_sof(data: bytes, rows: int, cols: int) -> bytes:
    """``data`` with the height and width of its first SOFn / SOF55 replaced."""
    frames = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}  # SOFn, SOF55
    position = 2
    while position < len(data):
        marker, length = data[position + 1], struct.unpack_from(">H", data, position + 2)[0]
        if marker in frames:
            return data[: position + 5] + struct.pack(">HH", rows, cols) + data[position + 9 :]
        position += 2 + length
    raise ValueError("no SOF marker")


def jpeg_sof_bomb(folder: Path) -> Path:
    """JPEG Baseline DICOM (about 1.2 kB), header 512 x 512, its SOF marker says 60000 x 60000."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16), 128, np.uint8)).save(buffer, format="JPEG", quality=50)
    frame = _patch_jpeg_sof(buffer.getvalue(), 60000, 60000)
    return _encapsulated(folder, "jpeg_sof_bomb.dcm", frame, JPEGBaseline8Bit)


def jpeg_lossless_sof_bomb(folder: Path) -> Path:
    """JPEG Lossless (SOF3) DICOM, header 512 x 512, its SOF3 says 60000 x 60000."""
    import imagecodecs

    frame = imagecodecs.ljpeg_encode(_film(64, 64, 12), bitspersample=12)
    frame = _patch_jpeg_sof(bytes(frame), 60000, 60000)
    return _encapsulated(folder, "jpeg_lossless_sof_bomb.dcm", frame, JPEGLosslessSV1, bits=12)


def jpegls_sof_bomb(folder: Path) -> Path:
    """JPEG-LS DICOM, header 512 x 512, its SOF55 says 60000 x 60000."""
    import imagecodecs

    frame = _patch_jpeg_sof(bytes(imagecodecs.jpegls_encode(_film(64, 64))), 60000, 60000)
    return _encapsulated(folder, "jpegls_sof_bomb.dcm", frame, JPEGLSLossless)


def _patch_siz(data: bytes, rows: int, cols: int) -> bytes:
    """A J2K codestream with SIZ's image and tile size replaced (``rows`` x ``cols``, one tile)."""
    assert data[:4] == b"\xff\x4f\xff\x51"
    body = bytearray(data)
    struct.pack_into(">II", body, 8, cols, rows)  # Xsiz, Ysiz
    struct.pack_into(">II", body, 24, cols, rows)  # XTsiz, YTsiz
    return bytes(body)


def j2k_siz_bomb(folder: Path) -> Path:
    """JPEG 2000 DICOM (about 4 kB), header 512 x 512, codestream SIZ 32000 x 32000."""
    import imagecodecs

    frame = imagecodecs.jpeg2k_encode(_film(64, 64), level=0, codecformat="J2K", reversible=True)
    return _encapsulated(folder, "j2k_siz_bomb.dcm", _patch_siz(bytes(frame), 32000, 32000), JPEG2000Lossless)


def htj2k_siz_bomb(folder: Path) -> Path:
    """HTJ2K DICOM, header 512 x 512, codestream SIZ 32000 x 32000."""
    import imagecodecs

    frame = imagecodecs.htj2k_encode(_film(64, 64), level=0)
    return _encapsulated(folder, "htj2k_siz_bomb.dcm", _patch_siz(bytes(frame), 32000, 32000), HTJ2KLossless)


def j2k_size_mismatch(folder: Path) -> Path:
    """JPEG 2000 DICOM whose codestream is 1024 x 1024 while the header says 512 x 512 (not a bomb; a lie)."""
    import imagecodecs

    frame = imagecodecs.jpeg2k_encode(_film(1024, 1024), level=0, codecformat="J2K", reversible=True)
    return _encapsulated(folder, "j2k_size_mismatch.dcm", bytes(frame), JPEG2000Lossless)


def rle_segment_lie(folder: Path) -> Path:
    """RLE Lossless DICOM whose 64-byte header declares 15 segments for an 8-bit grey film (1 expected)."""
    header = struct.pack("<16I", 15, *range(64, 64 + 15))
    return _encapsulated(folder, "rle_segment_lie.dcm", header + b"\x00" * 64, RLELossless)


def _deflated(ds: Dataset, path: Path) -> Path:
    """Write ``ds`` as Deflated Explicit VR Little Endian (File Meta plain, the data set deflated)."""
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def deflate_bomb(folder: Path, element_bytes: int = 3 << 30) -> Path:
    """Deflated Explicit VR LE DICOM of about 3 MB holding a 3 GB private OB element (``element_bytes``).

    Written as bytes here (the deflate stream of the zeros is made chunk by chunk): no 3 GB buffer.
    """
    ds = factory.radiograph(_film(), factory.CR, PixelSpacing=[0.7, 0.7])
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    plain = io.BytesIO()
    ds.save_as(plain, enforce_file_format=True)
    data = plain.getvalue()
    split = _dataset_start(data)
    dataset = data[split:]
    meta = _meta_for(ds, DeflatedExplicitVRLittleEndian)
    private = struct.pack("<HH2sHI", 0x0009, 0x1010, b"OB", 0, element_bytes)
    creator = struct.pack("<HH2sH", 0x0009, 0x0010, b"LO", 8) + b"MEDLUNG "
    pixel = dataset.find(struct.pack("<HH", 0x7FE0, 0x0010))
    head, tail = dataset[:pixel], dataset[pixel:]
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    path = Path(folder) / "deflate_bomb.dcm"
    with open(path, "wb") as out:
        out.write(meta)
        out.write(compressor.compress(head + creator + private))
        zeros = bytes(1 << 24)
        left = element_bytes
        while left:
            step = min(left, len(zeros))
            out.write(compressor.compress(zeros[:step]))
            left -= step
        out.write(compressor.compress(tail))
        out.write(compressor.flush())
    return path


def _dataset_start(data: bytes) -> int:
    """Offset of the first element after File Meta (group 0002) in a written DICOM file."""
    position = 132
    while struct.unpack_from("<H", data, position)[0] == 0x0002:
        vr = data[position + 4 : position + 6]
        if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC", b"UR", b"OD", b"OF", b"OL", b"OV"):
            position += 12 + struct.unpack_from("<I", data, position + 8)[0]
        else:
            position += 8 + struct.unpack_from("<H", data, position + 6)[0]
    return position


def _meta_for(ds: Dataset, syntax: str) -> bytes:
    other = copy.deepcopy(ds)
    other.file_meta.TransferSyntaxUID = syntax
    del other.PixelData
    buffer = io.BytesIO()
    other.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    return data[: _dataset_start(data)]


def limit_film(folder: Path) -> Path:
    """A legitimate film at the pixel limit: 8000 x 8000, 32-bit, rescale + window, deflated (must be segmented)."""
    base = np.asarray(
        __import__("PIL.Image", fromlist=["Image"]).fromarray(factory.chest_pixels(1000, 1000)).resize((8000, 8000))
    )
    stored = base.astype(np.uint32) * 4000 + 100000
    ds = factory.radiograph(
        stored,
        factory.DX_PRESENTATION,
        bits_stored=32,
        PixelSpacing=[0.05, 0.05],
        RescaleSlope=0.5,
        RescaleIntercept=-1000,
        WindowCenter=250000,
        WindowWidth=500000,
    )
    return _deflated(ds, Path(folder) / "limit_film.dcm")


def fifo(folder: Path) -> Path:
    """A FIFO named like a film (opening it for reading blocks until a writer comes)."""
    path = Path(folder) / "fifo.dcm"
    os.mkfifo(path)
    return path


def dev_zero(folder: Path) -> Path:
    """``/dev/zero``: endless zeros."""
    return Path("/dev/zero")


def metaimage_outside(folder: Path) -> Path:
    """A MetaImage header whose ``ElementDataFile`` is ``/etc/passwd``."""
    path = Path(folder) / "outside.mhd"
    path.write_text(
        "ObjectType = Image\nNDims = 2\nDimSize = 32 32\nElementType = MET_UCHAR\nElementDataFile = /etc/passwd\n"
    )
    return path


def nrrd_outside(folder: Path) -> Path:
    """A detached NRRD header whose ``data file`` climbs out of its folder to ``/etc/passwd``."""
    path = Path(folder) / "outside.nhdr"
    depth = len(Path(folder).resolve().parts)
    path.write_text(
        f"NRRD0004\ntype: uint8\ndimension: 2\nsizes: 32 32\nencoding: raw\ndata file: {'../' * depth}etc/passwd\n\n"
    )
    return path


def png_partial_rows(folder: Path) -> Path:
    """A 1000 x 1000 PNG whose (complete, valid) zlib stream holds only its first 4 rows."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    rows = b"".join(b"\0" + bytes([128]) * 1000 for _ in range(4))
    header = struct.pack(">IIBBBBB", 1000, 1000, 8, 0, 0, 0, 0)
    path = Path(folder) / "partial_rows.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )
    return path


def cut_at_7_bytes(folder: Path) -> Path:
    """A DICOM data set cut after 7 bytes of its first element (the node must not answer success)."""
    ds = factory.radiograph(_film(64, 64), factory.CR)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    path = Path(folder) / "cut_at_7_bytes.dcm"
    path.write_bytes(data[: _dataset_start(data) + 7])
    return path


#: Every case: name -> function(folder) -> path.
CASES: dict[str, Callable[[Path], Path]] = {
    f.__name__: f
    for f in (
        jpeg_sof_bomb,
        jpeg_lossless_sof_bomb,
        jpegls_sof_bomb,
        j2k_siz_bomb,
        htj2k_siz_bomb,
        j2k_size_mismatch,
        rle_segment_lie,
        deflate_bomb,
        limit_film,
        fifo,
        dev_zero,
        metaimage_outside,
        nrrd_outside,
        png_partial_rows,
        cut_at_7_bytes,
    )
}
#: What ``medlung predict`` must do with each: "error" (exit 1, one line naming the file) or "ok" (segmented).
EXPECTED = {name: "ok" if name == "limit_film" else "error" for name in CASES}
#: The cases that are DICOM data sets (what a modality could send over C-STORE).
DICOM_CASES = tuple(
    name for name in CASES if name not in ("fifo", "dev_zero", "metaimage_outside", "nrrd_outside", "png_partial_rows")
)


def main(argv: list[str]) -> None:
    folder = Path(argv[0] if argv else "hostile_corpus")
    folder.mkdir(parents=True, exist_ok=True)
    for name, make in CASES.items():
        path = make(folder)
        size = path.stat().st_size if path.is_file() else 0
        print(f"{name:24s} {path}  {size:,} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Small hostile DICOM files for the node tests (each a few KB on disk), and a raw C-STORE client that sends them.

Each builder returns the bytes of a DICOM *file* (File Meta + data set);
:func:`send_raw` C-STOREs the data set after the File Meta exactly as it is
in the file (pynetdicom's chunked sending, so nothing re-encodes or repairs
it), under the File Meta's SOP Class and Instance UIDs.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit

from tests import dicom_factory as factory

#: Bytes of the private element hidden in the deflated bomb (it inflates to this; its file is ~1 MB).
BOMB_BYTES = 1 << 30


def _file_bytes(ds) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _meta_length(data: bytes) -> int:
    """Offset where the data set starts after the File Meta of a DICOM file."""
    (group_length,) = struct.unpack("<I", data[140:144])  # (0002,0000) UL right after the preamble and DICM
    return 144 + group_length


def film(pixels: np.ndarray, **attributes):
    """A small CR film (uint16) with spacing."""
    return factory.radiograph(
        pixels.astype(np.uint16), factory.CR, bits_stored=12, PixelSpacing=[1.4, 1.4], **attributes
    )


def cut(data: bytes, keep: int) -> bytes:
    """The file with only ``keep`` bytes of its data set (a transfer cut short)."""
    return data[: _meta_length(data) + keep]


def other_uid(pixels: np.ndarray) -> bytes:
    """A film whose File Meta (so the C-STORE request) names another SOP Instance UID than its data set."""
    ds = film(pixels)
    data = _file_bytes(ds)
    uid = str(ds.SOPInstanceUID).encode()
    other = uid[:-1] + (b"1" if uid[-1:] != b"1" else b"2")  # same length, another valid UID
    meta_end = _meta_length(data)
    return data[:meta_end].replace(uid, other) + data[meta_end:]  # pydicom would make the File Meta agree


def jpeg_sof_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """JPEG Baseline, header 512x512, its SOF0 marker declaring ``width`` x ``height`` (about 1 KB... 20 KB)."""
    pixels = (np.indices((512, 512)).sum(axis=0) % 256).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=10)
    stream = bytearray(buffer.getvalue())
    sof = stream.find(b"\xff\xc0")
    stream[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return _encapsulated(pixels, bytes(stream), JPEGBaseline8Bit, bits=8)


def j2k_siz_bomb(size: int = 32000) -> bytes:
    """JPEG 2000, header 512x512, its SIZ marker declaring ``size`` x ``size`` (one tile as large)."""
    import imagecodecs

    pixels = (np.indices((512, 512)).sum(axis=0) % 4096).astype(np.uint16)
    stream = bytearray(imagecodecs.jpeg2k_encode(pixels, level=0, codecformat="J2K"))
    siz = stream.find(b"\xff\x51")
    # Lsiz(2) Rsiz(2) Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz (4 bytes each)
    stream[siz + 6 : siz + 14] = struct.pack(">II", size, size)
    stream[siz + 22 : siz + 30] = struct.pack(">II", size, size)
    return _encapsulated(pixels, bytes(stream), JPEG2000Lossless, bits=16)


def _encapsulated(pixels: np.ndarray, frame: bytes, syntax: str, bits: int) -> bytes:
    ds = factory.radiograph(pixels, factory.CR, PixelSpacing=[0.7, 0.7])
    ds.BitsAllocated = ds.BitsStored = 8 if bits == 8 else 16
    ds.HighBit = ds.BitsStored - 1
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
    return _file_bytes(ds)


def deflated_bomb(pixels: np.ndarray, hidden: int = BOMB_BYTES) -> bytes:
    """Deflated Explicit VR LE film with a private OB element of ``hidden`` zero bytes (the file is ~1 MB)."""
    ds = film(pixels)
    ds.add_new(0x00090010, "LO", "MEDLUNG")
    ds.add_new(0x00091000, "OB", bytes(8))  # a placeholder, made huge below
    plain = _file_bytes(ds)
    body = plain[_meta_length(plain) :]  # explicit VR LE data set
    placeholder = struct.pack("<HH2sHI", 0x0009, 0x1000, b"OB", 0, 8) + bytes(8)
    at = body.index(placeholder)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = compressor.compress(body[:at] + struct.pack("<HH2sHI", 0x0009, 0x1000, b"OB", 0, hidden))
    head += compressor.flush(zlib.Z_FULL_FLUSH)
    zeros = bytes(1 << 24)
    # after a full flush the compressor forgets its history, so 16 MB of zeros always deflate to the same block:
    # compressed once, repeated (seconds instead of a minute of CPU for 1 GB)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    parts = [head, block * (hidden // len(zeros))]
    parts.append(compressor.compress(body[at + len(placeholder) :]))
    parts.append(compressor.flush())
    del ds[0x00091000], ds[0x00090010]
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    deflated = _file_bytes(ds)  # pydicom writes the File Meta of a deflated file; its data set is replaced
    meta = deflated[: _meta_length(deflated)]
    return meta + b"".join(parts)


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def send_raw(paths, port: int, calling_ae: str, called_ae: str, host: str = "127.0.0.1") -> list[int | None]:
    """C-STORE each file's data set as it is on disk, one association; the status of each (None: no answer).

    A file the node aborts the association over gets None, and the files after it a new association.
    """
    from pydicom.filereader import read_file_meta_info
    from pynetdicom import AE, _config

    metas = [read_file_meta_info(p) for p in paths]
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 60
    for sop_class, syntax in sorted({(str(m.MediaStorageSOPClassUID), str(m.TransferSyntaxUID)) for m in metas}):
        ae.add_requested_context(sop_class, syntax)
    statuses: list[int | None] = []
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True  # send the bytes after the File Meta as they are
    try:
        while len(statuses) < len(paths):
            assoc = ae.associate(host, port, ae_title=called_ae)
            assert assoc.is_established, f"association with the node failed (rejected={assoc.is_rejected})"
            try:
                for path in paths[len(statuses) :]:
                    answer = assoc.send_c_store(path)
                    statuses.append(int(answer.Status) if answer and "Status" in answer else None)
                    if not assoc.is_established:
                        break
            finally:
                if assoc.is_established:
                    assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
    return statuses

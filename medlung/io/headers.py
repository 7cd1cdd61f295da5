"""What a film's header declares, read with bounded memory and time, before any pixel is decoded.

:func:`declared_size` gives the size a film declares (for the memory budget,
:mod:`medlung.memory`); :func:`inspect_dataset` checks a DICOM data set as
the node receives it (its UIDs, that it is whole) before it is queued. Both
read at most :data:`HEADER_BYTES` of header (a deflated data set is inflated
in a stream up to that many bytes, never whole), defer every value larger
than :data:`DEFER_BYTES`, and open only regular files (a FIFO or a device
would block or never end).
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from medlung.errors import UnreadableFileError

#: Most header bytes read (inflated, for a deflated data set) to find what a header declares.
HEADER_BYTES = 8 * 2**20
#: Bytes of a file read first to find its header (most headers end well before; :data:`HEADER_BYTES` otherwise).
_FIRST_READ = 64 * 2**10
#: Values larger than this are skipped, not read, while a header is walked (pydicom's ``defer_size``).
DEFER_BYTES = 64 * 2**10
#: Inflated bytes produced per step while a deflated data set is measured.
_INFLATE_STEP = 4 * 2**20
_DEFLATED = "1.2.840.10008.1.2.1.99"
_IMPLICIT = "1.2.840.10008.1.2"
_BIG_ENDIAN = "1.2.840.10008.1.2.2"
_SIZE_TAGS = (0x00280002, 0x00280010, 0x00280011, 0x00280100)
_LAST_SIZE_TAG = 0x00280100


def open_regular(path: str | Path):
    """A binary file object for ``path``, which must be a regular file (opened without blocking on a FIFO).

    Raises
    ------
    UnreadableFileError
        For a missing path, a folder, a FIFO, a device or a socket.
    """
    path = Path(path)
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnreadableFileError(f"cannot be opened ({exc.strerror})", path, "Check the path.") from None
    mode = os.fstat(handle).st_mode
    if not stat.S_ISREG(mode):
        os.close(handle)
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise UnreadableFileError(f"is {kind}, not a film file", path, "Give regular files only.")
    os.set_blocking(handle, True)
    return os.fdopen(handle, "rb")


def declared_size(path: str | Path) -> tuple[int, int, int, int] | None:
    """``(rows, cols, bits_allocated, samples)`` a film file declares, or None when its header does not say.

    DICOM: Rows, Columns, BitsAllocated, SamplesPerPixel; PNG, JPEG, TIFF:
    the size Pillow reads from the header (8 bits, or 16 for 16-bit modes);
    MetaImage, NRRD, NIfTI: the size SimpleITK reads from the header.
    """
    from medlung.io import sniff_format

    try:
        kind = sniff_format(path)
        if kind == "DICOM":
            with open_regular(path) as handle:
                head = handle.read(_FIRST_READ)
                ds = read_header(head, stop_after=_LAST_SIZE_TAG)
                if ds.get(_SIZE_TAGS[2]) is None and len(head) == _FIRST_READ:  # a long header: read more
                    ds = read_header(head + handle.read(HEADER_BYTES - _FIRST_READ), stop_after=_LAST_SIZE_TAG)
            values = [ds.get(tag) for tag in _SIZE_TAGS]
            if values[1] is None or values[2] is None:
                return None
            samples, rows, cols, bits = (int(v.value) if v is not None and v.value is not None else 0 for v in values)
            return rows, cols, bits or 16, samples or 1
        if kind == "ITK":
            import SimpleITK as sitk

            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            size = reader.GetSize()
            found = re.search(r"(\d+)-bit", sitk.GetPixelIDValueAsString(reader.GetPixelID()))
            bits = int(found.group(1)) if found else 64
            return int(size[1]) if len(size) > 1 else 1, int(size[0]), bits, reader.GetNumberOfComponents()
        from PIL import Image

        with open_regular(path) as handle, Image.open(handle) as image:
            cols, rows = image.size
            bits = 16 if image.mode.startswith("I") else 32 if image.mode == "F" else 8
            return rows, cols, bits, len(image.getbands())
    except Exception:  # the reader says what is wrong with the file; here only the size is asked
        return None


def film_cost(path: str | Path, decode: str = "full", max_pixels: int | None = None) -> int | None:
    """Peak bytes one film will cost a batch, from its header alone; None when the header does not say.

    DICOM: :func:`medlung.io.cost.declared_cost` (the frame's own header
    included, in the ``decode`` mode the batch reads with) plus
    :data:`medlung.memory.PER_FILM_BYTES`; other formats:
    :func:`medlung.memory.declared_decode_cost` of :func:`declared_size`. A
    file the reader would refuse gives None: the reader then says why.
    """
    from medlung.errors import MedlungError
    from medlung.memory import PER_FILM_BYTES, declared_decode_cost

    try:
        from medlung.io import sniff_format

        if sniff_format(path) == "DICOM":
            from medlung.io.cost import declared_cost

            return (
                declared_cost(path, decode="full" if decode == "full" else "reduced", max_pixels=max_pixels).total_bytes
                + PER_FILM_BYTES
            )
    except MedlungError:
        return None
    except Exception:
        return None
    size = declared_size(path)
    return None if size is None else declared_decode_cost(*size)


@dataclass
class DatasetCheck:
    """What :func:`inspect_dataset` found in a received data set."""

    sop_class_uid: str
    sop_instance_uid: str
    #: Bytes of the data set as decoded (inflated when deflated).
    decoded_bytes: int
    #: Whether it has Pixel Data (not checked, True, for a deflated data set: only its head is parsed).
    has_pixels: bool = True


class HeaderError(ValueError):
    """A data set that cannot be understood (cut short, not DICOM): the sentence says why."""


def inspect_dataset(
    encoded: bytes | memoryview | io.BytesIO, transfer_syntax: str, max_decoded_bytes: int
) -> DatasetCheck:
    """Check a data set as a C-STORE delivers it (encoded in ``transfer_syntax``, no File Meta).

    ``encoded`` may be the receiver's own ``BytesIO`` (read in place, not copied).

    Its SOP Class and Instance UIDs are read; every element up to the end
    must fit in the bytes received (a data set cut short is refused); a
    deflated one is inflated in a stream, counting, never held whole.

    Raises
    ------
    HeaderError
        When the data set cannot be understood.
    OverflowError
        When it inflates to more than ``max_decoded_bytes``.
    """
    data: bytes | memoryview = encoded.getbuffer() if isinstance(encoded, io.BytesIO) else encoded
    body: bytes | memoryview
    if transfer_syntax == _DEFLATED:
        body, decoded = _inflate_counting(data, max_decoded_bytes)
        syntax = "1.2.840.10008.1.2.1"
        whole = False  # only a prefix is walked: the inflated length was checked instead
    else:
        body, decoded, syntax, whole = data, len(data), transfer_syntax, True
    ds, end = _walk(
        body, syntax, stop_after=None if whole else 0x00080018, defer=_STRUCTURE_DEFER if whole else DEFER_BYTES
    )
    if whole and end > len(body):
        raise HeaderError(f"the data set is cut short ({len(body)} bytes received, its elements need {end})")
    sop_class, sop_instance = (str(ds.get(tag).value or "").strip() if tag in ds else "" for tag in _UID_TAGS)
    if not sop_class or not sop_instance:
        raise HeaderError("the data set has no SOP Class UID or SOP Instance UID (not a DICOM instance, or cut short)")
    if (
        whole
        and 0x7FE00010 in ds
        and _undefined_length(ds, 0x7FE00010)
        and _SEQUENCE_END not in bytes(body[-_TAIL_BYTES:])
    ):
        raise HeaderError("the data set is cut short inside its compressed pixel data (no end of the fragments)")
    return DatasetCheck(sop_class, sop_instance, decoded, has_pixels=not whole or 0x7FE00010 in ds)


_UID_TAGS = (0x00080016, 0x00080018)


def _undefined_length(ds, tag: int) -> bool:
    """Whether an element was read with an undefined length (encapsulated pixel data), without reading its value."""
    raw = ds.get_item(tag, keep_deferred=True)
    length = getattr(raw, "length", None)
    return length == 0xFFFFFFFF or bool(getattr(raw, "is_undefined_length", False))


#: Values longer than this are skipped while a whole data set's structure is checked (UIDs and texts are read).
_STRUCTURE_DEFER = 256
#: The Sequence Delimitation Item that ends encapsulated pixel data (little endian), and how far from the end of a
#: data set it is looked for (trailing padding may follow it).
_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_TAIL_BYTES = 1 << 16


def read_header(data: bytes, stop_after: int | None = None):
    """A pydicom Dataset of the header in ``data`` (a file's first bytes), values over :data:`DEFER_BYTES` skipped.

    A deflated data set is inflated up to :data:`HEADER_BYTES`. Elements
    after ``stop_after`` (a tag) are not read.

    Raises
    ------
    HeaderError
        When ``data`` is not a DICOM header.
    """
    from pydicom.filereader import read_preamble

    stream = io.BytesIO(data)
    syntax = _IMPLICIT
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            preamble = read_preamble(stream, force=True)
            start = stream.tell()
            if preamble is not None or data[:4] == b"DICM":
                from pydicom.filereader import _read_file_meta_info

                meta = _read_file_meta_info(stream)
                syntax = str(meta.get("TransferSyntaxUID", _IMPLICIT) or _IMPLICIT)
                start = stream.tell()
            elif data[4:6].isalpha():  # an ACR-NEMA file in explicit VR
                syntax = "1.2.840.10008.1.2.1"
    except Exception as exc:
        raise HeaderError(f"no DICOM header ({type(exc).__name__})") from None
    body = data[start:]
    if syntax == _DEFLATED:
        body, _ = _inflate_counting(body, HEADER_BYTES, keep=HEADER_BYTES, allow_more=True)
        syntax = "1.2.840.10008.1.2.1"
    ds, _ = _walk(body, syntax, stop_after)
    return ds


def _walk(body: bytes | memoryview, syntax: str, stop_after: int | None, defer: int = DEFER_BYTES):
    """The elements of ``body`` (values over ``defer`` bytes skipped, not read) and the offset the last one ends at.

    pydicom reads a value shorter than ``defer`` with one ``read``, which
    returns fewer bytes without complaint at the end of a cut data set; a
    skipped value moves the offset past the end instead, which the caller
    compares with the bytes received.
    """
    from pydicom.dataset import Dataset
    from pydicom.filereader import read_dataset

    implicit = syntax == _IMPLICIT
    little = syntax != _BIG_ENDIAN
    stream = _ViewReader(body)

    def stop(tag, vr, length) -> bool:
        return stop_after is not None and tag > stop_after

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = read_dataset(cast(BinaryIO, stream), implicit, little, stop_when=stop, defer_size=defer)
    except (EOFError, struct.error, ValueError, OSError, NotImplementedError, KeyError) as exc:
        if stop_after is not None:
            return Dataset(), len(body)  # a prefix may end inside an element
        raise HeaderError(f"the data set cannot be parsed ({type(exc).__name__}: {str(exc)[:80]})") from None
    return ds, stream.tell()


class _ViewReader(io.RawIOBase):
    """A seekable binary stream over a bytes-like object, without copying it (``io.BytesIO`` copies)."""

    def __init__(self, data) -> None:
        self._view = memoryview(data).cast("B")
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else self._position + size
        chunk = bytes(self._view[self._position : end])
        self._position += len(chunk)
        return chunk

    def readinto(self, buffer) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, base + offset)  # past the end is allowed: tell() then shows a cut data set
        return self._position

    def tell(self) -> int:
        return self._position


def _inflate_counting(
    deflated: bytes | memoryview, limit: int, keep: int = HEADER_BYTES, allow_more: bool = False
) -> tuple[bytes, int]:
    """Inflate a raw deflate stream step by step; the first ``keep`` bytes and the total inflated size.

    Raises
    ------
    OverflowError
        When it inflates to more than ``limit`` (unless ``allow_more``: then it stops there).
    HeaderError
        When the stream is corrupt or cut short.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    kept: list[bytes] = []
    kept_bytes = total = 0
    pending = deflated
    try:
        while True:
            chunk = inflater.decompress(pending, _INFLATE_STEP)
            pending = inflater.unconsumed_tail
            total += len(chunk)
            if kept_bytes < keep:
                kept.append(chunk[: keep - kept_bytes])
                kept_bytes += len(kept[-1])
            if total > limit:
                if allow_more:
                    return b"".join(kept), total
                raise OverflowError(f"the deflated data set inflates to more than {limit / 1e6:.0f} MB")
            if inflater.eof or (not pending and not chunk):
                break
    except zlib.error as exc:
        raise HeaderError(f"the deflated data set is corrupt ({exc})") from None
    if not inflater.eof and not allow_more:
        raise HeaderError("the deflated data set is cut short")
    return b"".join(kept), total

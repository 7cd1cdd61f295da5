"""Reading a DICOM file within bounds: regular files only, large elements left on disk, deflate with an output cap.

* The file is opened with :func:`medlung.io.files.open_regular` (no FIFO,
  device or socket; never blocks).
* Elements larger than :data:`DEFER_BYTES` are not read with the header
  (pydicom's ``defer_size``): the pixel data is read by the film reader from
  the file itself (memory-mapped when uncompressed), other large elements
  only if something asks for them (the film reader drops them).
* A Deflated Explicit VR Little Endian data set is inflated in a stream, at
  most ``max_bytes`` of output (pydicom inflates the whole stream at once: a
  2.9 MB file can hold a 3 GB element).
"""

from __future__ import annotations

import mmap
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian

from medlung.defaults import DEFAULT_MAX_PIXELS
from medlung.errors import UnreadableFileError, UnsupportedImageError
from medlung.io.files import open_regular

#: Elements above this size are not read with the header, bytes.
DEFER_BYTES = 1 << 20
#: What a DICOM header may hold besides its pixels, bytes (a film's header is kilobytes; a vendor's private
#: blobs, an ICC profile or a thumbnail can make it megabytes).
HEADER_ALLOWANCE = 64 << 20
#: The Pixel Data element's tag.
PIXEL_DATA = 0x7FE00010


def max_dataset_bytes(max_pixels: int) -> int:
    """Largest DICOM data set (file or inflated) a film of ``max_pixels`` pixels can need: 4 bytes a pixel + header."""
    return int(max_pixels) * 4 + HEADER_ALLOWANCE


class _Memory:
    """A read-only file over a bytearray (pydicom reads it like a file; nothing is copied)."""

    def __init__(self, data: bytearray) -> None:
        self.data, self.view, self.position = data, memoryview(data), 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.view) if size is None or size < 0 else min(len(self.view), self.position + size)
        chunk = bytes(self.view[self.position : end])
        self.position = end
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self.position, len(self.view))[whence]
        self.position = max(0, base + offset)
        return self.position

    def tell(self) -> int:
        return self.position

    def close(self) -> None:  # pydicom may close what it read from
        pass


@dataclass
class DicomFile:
    """A DICOM data set read within bounds, and where its pixel data lies.

    Attributes
    ----------
    dataset : pydicom.Dataset
        The header; a large Pixel Data element is still deferred (a ``RawDataElement`` without value).
    path : Path
        The file.
    inflated : bytearray or None
        The inflated data set of a deflated file (offsets of deferred elements point into it).
    identity : tuple
        ``(st_dev, st_ino, st_size, st_mtime_ns)`` of the file when read: the pixels are read only from the same file.
    deflated_cap : int or None
        For a deflated file whose inflated data set was released: the size to inflate it to again.
    """

    dataset: Dataset
    path: Path
    inflated: bytearray | None
    identity: tuple
    deflated_cap: int | None = None

    @property
    def pixel_element(self) -> RawDataElement | None:
        """The Pixel Data element while still deferred (value ``None``), else ``None``."""
        raw = self.dataset._dict.get(Tag(PIXEL_DATA)) if hasattr(self.dataset, "_dict") else None
        if isinstance(raw, RawDataElement) and raw.value is None:
            return raw
        return None

    def released(self) -> DicomFile:
        """This file without its inflated data set (kept: the header); :meth:`buffer` inflates it again if asked."""
        if self.inflated is None:
            return self
        return DicomFile(self.dataset, self.path, None, self.identity, deflated_cap=len(self.inflated) + 1)

    def _inflated_again(self) -> bytearray:
        from pydicom.filereader import _read_file_meta_info, read_preamble

        with open_regular(self.path) as handle:
            self._check_identity(handle)
            read_preamble(handle, True)
            _read_file_meta_info(handle)
            return inflate(handle, int(self.deflated_cap or 0), self.path)

    def _check_identity(self, handle) -> None:
        status = os.fstat(handle.fileno())
        if (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns) != self.identity:
            raise UnreadableFileError(
                "changed while it was being read", self.path, "Read it again once it is complete."
            )

    def buffer(self):
        """The bytes the deferred offsets refer to: the inflated data set, or the file memory-mapped (read-only)."""
        if self.inflated is not None:
            return memoryview(self.inflated)
        if self.deflated_cap:
            return memoryview(self._inflated_again())
        with open_regular(self.path) as handle:
            self._check_identity(handle)
            if self.identity[2] == 0:
                return memoryview(b"")
            return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)

    def reader(self):
        """A file object positioned nowhere in particular, over the same bytes as :meth:`buffer`."""
        if self.inflated is not None:
            return _Memory(self.inflated)
        if self.deflated_cap:
            return _Memory(self._inflated_again())
        return open_regular(self.path)


def read_dicom_file(path: str | Path, max_bytes: int | None = None, film: bool = False) -> DicomFile:
    """Read a DICOM file's header within bounds (see the module docstring).

    Parameters
    ----------
    path : str or Path
        The file (a regular file; with or without preamble and File Meta).
    max_bytes : int, optional
        Refuse a file larger than this, or a deflated data set inflating to more (default: no file limit, and
        the inflate limit of a film at the default pixel limit).
    film : bool
        The caller reads the pixel data itself (:class:`~medlung.io.dicom_pixels.DicomPixels`): the large
        elements of a deflated data set stay deferred, pointing into :attr:`DicomFile.inflated`.

    Raises
    ------
    UnreadableFileError
        Not a regular file, not DICOM, a broken deflate stream.
    UnsupportedImageError
        Larger than ``max_bytes`` (on disk or inflated).
    """
    import pydicom
    from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble

    path = Path(path)
    with open_regular(path) as handle:
        status = os.fstat(handle.fileno())
        identity = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
        if max_bytes is not None and status.st_size > max_bytes:
            raise UnsupportedImageError(
                f"is {status.st_size / 1e6:,.0f} MB, more than a film at the pixel limit can need "
                f"({max_bytes / 1e6:,.0f} MB)",
                path,
                "Raise --max-pixels if the film is real.",
            )
        preamble = read_preamble(handle, True)
        meta = _read_file_meta_info(handle)
        if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
            cap = max_bytes if max_bytes is not None else max_dataset_bytes(DEFAULT_MAX_PIXELS)
            inflated = inflate(handle, cap, path)
            # large elements stay in the inflated bytes only for a film reader, which reads its pixel data
            # from them itself; any other reader gets every element (pydicom could not re-read them from the file)
            dataset = read_dataset(
                cast(BinaryIO, _Memory(inflated)), False, True, defer_size=DEFER_BYTES if film else None
            )
            ds = FileDataset(str(path), dataset, preamble, meta, False, True)
            ds.set_original_encoding(False, True, dataset._character_set)
            return DicomFile(ds, path, inflated, identity)
        handle.seek(0)
        ds = pydicom.dcmread(handle, force=True, defer_size=DEFER_BYTES)
    return DicomFile(ds, path, None, identity)


def inflate(handle, cap: int, path: Path, chunk: int = 1 << 20) -> bytearray:
    """Inflate the raw deflate stream from ``handle``'s position to its end, refusing more than ``cap`` bytes."""
    stream = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()

    def over() -> UnsupportedImageError:
        return UnsupportedImageError(
            f"its deflated data set inflates to more than {cap / 1e6:,.0f} MB, more than a film at the pixel "
            "limit can need: refused",
            path,
            "Raise --max-pixels if the film is real.",
        )

    try:
        while not stream.eof:
            data = handle.read(chunk)
            if not data:
                break
            while data:
                out += stream.decompress(data, min(chunk << 4, cap + 1 - len(out)))  # 16 MiB of output at a time
                if len(out) > cap:
                    raise over()
                data = stream.unconsumed_tail
                if stream.eof:
                    break
        out += stream.flush()
    except zlib.error as exc:
        raise UnreadableFileError(f"its deflated data set is broken ({exc})", path, "Export the film again.") from None
    if len(out) > cap:
        raise over()
    return out


def drop_large_elements(ds: Dataset) -> list[str]:
    """Remove the deferred (large, unread) elements other than Pixel Data; one note per element removed."""
    notes = []
    for tag in list(ds.keys()):
        raw = ds._dict.get(tag)
        if int(tag) != PIXEL_DATA and isinstance(raw, RawDataElement) and raw.value is None and raw.length:
            size = "undefined length" if raw.length == 0xFFFFFFFF else f"{raw.length / 1e6:,.1f} MB"
            notes.append(f"element {tag} ({size}) not read: larger than {DEFER_BYTES >> 20} MiB and not a film's")
            del ds[tag]
    return notes

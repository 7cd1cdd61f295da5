"""A DICOM film's pixels, checked before decoding and decoded at the resolution asked.

:class:`DicomPixels` is the :class:`~medlung.film.PixelSource` of a DICOM
film. Built from the header alone, it first compares the frame's own header
with Rows x Columns, samples, bits and the pixel limit
(:func:`medlung.io.codestreams.check_frame`; uncompressed: the element's
length), so a hostile frame is refused before any decoder allocates. Then:

* :meth:`native` decodes the whole film (pydicom's decoders, JPEG 2000
  through imagecodecs; uncompressed data straight from the memory-mapped
  file) and turns it to float32 through the film's grey look-up
  (:class:`medlung.io.grey.GreyChain`), strip by strip;
* :meth:`at_least` gives a smaller image: a JPEG 2000 / HTJ2K resolution
  level or a DCT-scaled JPEG decoded as such, or (other syntaxes) the stored
  values area-averaged to the size asked (:mod:`medlung.io.reduce`).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    JPEG2000TransferSyntaxes,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLELossless,
)

from medlung.errors import PixelDecodeError, UnsupportedImageError
from medlung.io import reduce
from medlung.io.codestreams import Codestream, CodestreamError, Declared, check_frame
from medlung.io.dicom_file import DicomFile
from medlung.io.grey import GreyChain, clear_unused_bits, stored_range

_DECODE_HINT = (
    "The file may be truncated; for compressed films check that pylibjpeg, "
    "pylibjpeg-libjpeg and pylibjpeg-openjpeg are installed."
)
#: Levels finer than the coarsest that covers the size asked. The coarsest one's samples are each a wider, smoother
#: average than the working grid's area average; one level finer costs a few ms more (0.03 -> 0.06 CPU s on a
#: 4020x4892 JPEG 2000 film) and brings the working-grid image 3x closer to the full decode's (mean difference
#: 0.2 % -> 0.07 % of its range, largest 13 % -> 4 %; Dice of the masks 0.9991 -> 0.9994): docs/benchmarks.md.
FINER_LEVELS = 1
#: Attributes a decoder needs (copied into the small data set handed to pydicom's decoders).
_PIXEL_MODULE = (
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PlanarConfiguration",
    "NumberOfFrames",
)


def family(syntax: str) -> str:
    """``"native"``, ``"jpeg"``, ``"jpeg-ls"``, ``"j2k"`` or ``"rle"``: the codestream family of a transfer syntax."""
    uid = UID(syntax)
    if uid in JPEG2000TransferSyntaxes:
        return "j2k"
    if uid in JPEGLSTransferSyntaxes:
        return "jpeg-ls"
    if uid in JPEGTransferSyntaxes or uid in (JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLosslessSV1):
        return "jpeg"
    if uid == RLELossless:
        return "rle"
    if uid.is_encapsulated:
        return "other"
    return "native"


def declared_of(ds: Dataset) -> Declared:
    """Rows, Columns, samples and bits the header declares (checked sane by the caller)."""
    allocated = int(ds.BitsAllocated)
    return Declared(
        rows=int(ds.Rows),
        cols=int(ds.Columns),
        samples=int(ds.get("SamplesPerPixel", 1) or 1),
        bits_allocated=allocated,
        bits_stored=int(ds.get("BitsStored", allocated) or allocated),
    )


class DicomPixels:
    """The pixels of one DICOM film, checked, decoded when asked (see the module docstring).

    Parameters
    ----------
    source : medlung.io.dicom_file.DicomFile
        The file as read by :func:`~medlung.io.dicom_file.read_dicom_file` (Pixel Data possibly deferred).
    max_pixels : int or None
        The pixel limit the frame's own header must respect.

    Raises
    ------
    UnsupportedImageError
        The frame's own header disagrees with the DICOM header or exceeds the limit.
    PixelDecodeError
        The pixel data is missing, cut short, or its frame cannot be found.
    """

    def __init__(self, source: DicomFile, max_pixels: int | None = None) -> None:
        self.file = source
        ds = source.dataset
        self.path = source.path
        self.syntax = UID(str(ds.file_meta.TransferSyntaxUID))
        self.family = family(self.syntax)
        self.declared = declared_of(ds)
        self.shape = (self.declared.rows, self.declared.cols)
        self.signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        self.header = ds
        self.stream: Codestream | None = None
        self.frame: bytes | None = None
        self._lock = threading.Lock()
        self._cache: dict[tuple[tuple[int, int], str], np.ndarray] = {}
        self._chain: GreyChain | None = None
        self._raw = source.pixel_element  # where the deferred value lies; the header's own is deleted by the reader
        self._value = None if self._raw is not None else ds.get("PixelData")
        if self.family == "native":
            self._check_native_length()
        else:
            self.frame = self._read_frame()
            if self.family in ("jpeg", "jpeg-ls", "j2k", "rle"):
                try:
                    self.stream = check_frame(
                        self.frame, "rle" if self.family == "rle" else self.family, self.declared, max_pixels
                    )
                except CodestreamError as exc:
                    raise UnsupportedImageError(
                        f"{exc}: refused before decoding", self.path, "The file is damaged or hostile; export it again."
                    ) from None

    # --- where the bytes are ---------------------------------------------------------------------------------------
    def _element(self) -> tuple[object, int, int]:
        """``(buffer, offset, length)`` of the Pixel Data value (in the header, the inflated set or the mapped file)."""
        raw = self._raw
        if raw is not None:
            return self.file.buffer(), int(raw.value_tell), int(raw.length)
        value = self._value
        if value is None:
            raise PixelDecodeError("has no pixel data (the file may be truncated)", self.path, _DECODE_HINT)
        return memoryview(value), 0, len(value)

    def _check_native_length(self) -> None:
        raw = self._raw
        if raw is None:
            length = len(self._value or b"")
        else:
            total = len(self.file.inflated) if self.file.inflated is not None else self.file.identity[2]
            length = min(int(raw.length), max(0, total - int(raw.value_tell)))
        expected = self.declared.native_bytes
        if length < expected:
            raise PixelDecodeError(
                f"pixel data could not be decoded ({self.syntax.name}; {length} bytes of pixel data, "
                f"{expected} expected)",
                self.path,
                _DECODE_HINT,
            )

    def _read_frame(self) -> bytes:
        from pydicom.encaps import generate_frames

        raw = self._raw
        try:
            if raw is None:
                data = self._value
                if data is None:
                    raise ValueError("no pixel data")
                return next(generate_frames(bytes(data), number_of_frames=1))
            with self.file.reader() as reader:
                reader.seek(int(raw.value_tell))
                return next(generate_frames(reader, number_of_frames=1))
        except Exception as exc:
            raise PixelDecodeError(
                f"pixel data could not be decoded ({self.syntax.name}; its frame cannot be found: "
                f"{type(exc).__name__}: {str(exc)[:120]})",
                self.path,
                _DECODE_HINT,
            ) from None

    # --- decoding ----------------------------------------------------------------------------------------------------
    @property
    def chain(self) -> GreyChain:
        """The grey look-up of this film, decided from the header once."""
        if self._chain is None:
            low, high = stored_range(self.header)
            kind = f"{'i' if self.signed else 'u'}{max(1, self.declared.bits_allocated // 8)}"
            self._chain = GreyChain(self.header, int(low), int(high), np.dtype(kind))
        return self._chain

    def stored(self) -> np.ndarray:
        """The stored values at full size (a read-only view of the mapped file for uncompressed data)."""
        if self.family == "native":
            buffer, offset, _ = self._element()
            little = not (self.syntax == "1.2.840.10008.1.2.2")
            kind = np.dtype(f"{'<' if little else '>'}{'i' if self.signed else 'u'}{self.declared.bits_allocated // 8}")
            count = self.shape[0] * self.shape[1]
            array = np.frombuffer(buffer, dtype=kind, count=count, offset=offset).reshape(self.shape)  # type: ignore
            return clear_unused_bits(array, self.declared.bits_stored, self.signed)
        return self._decode_full()

    def _decode_full(self) -> np.ndarray:
        from medlung.io import j2k

        j2k.register_once()
        ds = Dataset()
        for keyword in _PIXEL_MODULE:
            if keyword in self.header:
                setattr(ds, keyword, self.header[keyword].value)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = self.syntax
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([self.frame or b""])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pixels = ds.pixel_array
        except Exception as exc:
            raise PixelDecodeError(
                f"pixel data could not be decoded ({self.syntax.name} ({self.syntax}); {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''})",
                self.path,
                _DECODE_HINT,
            ) from None
        if pixels.ndim != 2:
            raise UnsupportedImageError(
                f"pixel array has shape {pixels.shape}, expected (rows, cols)",
                self.path,
                "Give a single-frame greyscale CR, DX or Secondary Capture chest film.",
            )
        return pixels

    def native(self) -> np.ndarray:
        """The whole film, float32 (the values a full decode gives)."""
        return reduce.convert(self.stored(), self.chain)

    def direct_level(self, need: Sequence[int], detail: str = "grid") -> int:
        """The reduced level the codec gives directly for ``need`` (0: none; area averaging instead).

        ``detail="grid"``: :data:`FINER_LEVELS` finer than the coarsest level covering ``need`` (an image the
        network measures); ``"picture"``: the coarsest level covering half of ``need`` (a picture drawn at
        ``need``, such as the overlay: a preview).
        """
        stream = self.stream
        if stream is None or stream.components != 1 or self.signed or stream.signed:
            return 0
        if detail == "picture":
            need = (-(-int(need[0]) // 2), -(-int(need[1]) // 2))
        if stream.kind in ("j2k", "htj2k") and stream.bits <= 16:
            level = reduce.coarsest_level(self.shape, need, stream.levels)
        elif stream.dct_scalable and stream.bits == 8:
            level = reduce.coarsest_level(self.shape, need, 3)
        else:
            return 0
        if detail == "picture":
            return level
        return max(1, level - FINER_LEVELS) if level else 0

    def at_least(self, shape: Sequence[int], detail: str = "grid") -> np.ndarray:
        """The film area-averaged to ``shape`` (clipped to the native size), float32; cached.

        From a resolution level the codec decodes directly when there is one (weighted by where its samples
        lie: :func:`medlung.io.reduce.from_level`), else from the stored values at full size
        (:func:`medlung.io.reduce.area_average`). With ``detail="picture"`` the image may be smaller than
        ``shape``, down to half of it (the resolution level's own size): a picture is drawn from it.
        """
        key = (reduce.shrink_shape(self.shape, shape), detail)
        with self._lock:
            if key not in self._cache:
                self._prefetch([key])
            return self._cache[key]

    def prefetch(self, shapes: Sequence[Sequence[int]], detail: Sequence[str] | None = None) -> None:
        """Decode what :meth:`at_least` will be asked for ``shapes`` (each with its ``detail``), the full film once."""
        details = list(detail) if detail is not None else ["grid"] * len(shapes)
        with self._lock:
            self._prefetch([(reduce.shrink_shape(self.shape, s), d) for s, d in zip(shapes, details)])

    def _prefetch(self, requests: Sequence[tuple[tuple[int, int], str]]) -> None:
        pooled = []
        for key in requests:
            if key in self._cache:
                continue
            shape, detail = key
            level = self.direct_level(shape, detail)
            if level:
                decoded = self._decode_level(level)
                if decoded is not None:
                    assert self.stream is not None
                    kind = "j2k" if self.stream.kind in ("j2k", "htj2k") else "jpeg"
                    grey = reduce.convert(decoded, self.chain)
                    size = (min(shape[0], grey.shape[0]), min(shape[1], grey.shape[1]))
                    self._cache[key] = reduce.from_level(grey, level, kind, self.shape, size)
                    continue
            pooled.append(key)
        if pooled:
            stored = self.stored()
            shapes = list(dict.fromkeys(shape for shape, _ in pooled if shape != self.shape))
            images = dict(zip(shapes, reduce.area_average(stored, shapes, self.chain)))
            if any(shape == self.shape for shape, _ in pooled):
                images[self.shape] = reduce.convert(stored, self.chain)
            for shape, detail in pooled:
                self._cache[(shape, detail)] = images[shape]
        # the inflated data set of a deflated film is the film's size again: read again if the native pixels are
        # asked for later, rather than held while the film is segmented and written
        self.file = self.file.released()

    def _decode_level(self, level: int) -> np.ndarray | None:
        """The frame decoded at ``level`` by its codec, or ``None`` when the codec cannot (full decode then)."""
        assert self.stream is not None and self.frame is not None
        try:
            if self.stream.kind in ("j2k", "htj2k"):
                return reduce.j2k_at_level(self.frame, level, self.shape)
            return reduce.jpeg_at_scale(self.frame, level, self.shape)
        except Exception:  # Pillow without the codec, a codestream it reads differently: decode at full size
            return None

    @property
    def decode_bytes(self) -> int:
        """Bytes the full decode allocates for the stored values (the codestream's own size when compressed)."""
        if self.stream is not None:
            return self.stream.decoded_bytes
        return self.declared.native_bytes

"""The size a compressed frame declares for itself, read from its own header before any decoder runs.

A DICOM header says Rows x Columns, but the decoder allocates what the
codestream inside the pixel data says: a 1 KB JPEG whose SOF marker declares
60000 x 60000 makes a decoder ask for gigabytes although the header says
512 x 512. This module reads the codestream's own header:

* JPEG (ITU-T T.81): the first SOFn marker (baseline, extended, progressive,
  lossless SOF3, arithmetic), JPEG-LS (ITU-T T.87) SOF55 (``FFF7``);
* JPEG 2000 and HTJ2K (ITU-T T.800, T.814): SIZ, the number of wavelet
  decomposition levels of COD (the reduced resolutions a decoder can give
  directly) and CAP (HTJ2K); a JP2 wrapper is looked through;
* RLE Lossless (PS3.5 G.4): the 64-byte header's segment count and offsets;

and :func:`check_frame` compares it with the DICOM header. Nothing here
decodes pixels; it reads at most the frame's first kilobytes.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass

#: SOFn markers that carry a frame header (T.81 B.1.1.3; C4 DHT, C8 JPG and CC DAC are not frames), and JPEG-LS.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
#: Markers without a length field (T.81 B.1.1.2): SOI, EOI, RSTm, TEM.
_JPEG_STANDALONE = {0xD8, 0xD9, 0x01, *range(0xD0, 0xD8)}
#: Largest frame header medlung walks through before giving up (a legitimate one is a few kB of tables).
HEADER_SEARCH_BYTES = 1 << 20


class CodestreamError(ValueError):
    """The codestream's header is malformed or missing; the message says what was found."""


@dataclass(frozen=True)
class Codestream:
    """What a compressed frame says about itself.

    Attributes
    ----------
    kind : str
        ``"jpeg"`` (T.81, any process), ``"jpeg-ls"``, ``"j2k"`` or ``"htj2k"``.
    rows, cols : int
        Image size the decoder will produce, pixels.
    components : int
        Colour components (1 for a grey film).
    bits : int
        Sample precision, bits.
    process : int or None
        The JPEG SOF marker's low byte (``0xC0`` baseline, ``0xC1`` extended, ``0xC3`` lossless, ``0xF7``
        JPEG-LS); ``None`` for JPEG 2000.
    levels : int
        Wavelet decomposition levels (JPEG 2000): a decoder can give the image at ``1 / 2**r`` of its size for
        ``r <= levels`` without decoding the finer resolutions. 0 for JPEG.
    signed : bool
        Samples are signed (JPEG 2000 SIZ); JPEG samples are unsigned.
    """

    kind: str
    rows: int
    cols: int
    components: int
    bits: int
    process: int | None = None
    levels: int = 0
    signed: bool = False

    @property
    def decoded_bytes(self) -> int:
        """Bytes a decoder allocates for the whole image (containers of 1, 2 or 4 bytes a sample)."""
        per_sample = 1 if self.bits <= 8 else 2 if self.bits <= 16 else 4
        return self.rows * self.cols * self.components * per_sample

    @property
    def dct_scalable(self) -> bool:
        """A DCT-based JPEG (baseline or extended, sequential or progressive) that can be decoded at 1/2-1/8."""
        return self.kind == "jpeg" and self.process in (0xC0, 0xC1, 0xC2)


def parse(data: bytes | memoryview) -> Codestream:
    """The header of a JPEG, JPEG-LS, JPEG 2000 or HTJ2K codestream (the frame's first bytes suffice).

    Raises
    ------
    CodestreamError
        When the bytes start no known codestream or its header is broken.
    """
    head = bytes(data[:12])
    if head.startswith(b"\xff\xd8"):
        return parse_jpeg(data)
    if head.startswith(b"\xff\x4f\xff\x51") or head[4:8] == b"jP  ":
        return parse_j2k(data)
    raise CodestreamError(f"the frame starts with {head[:4].hex()} , which is no JPEG or JPEG 2000 codestream")


def parse_jpeg(data: bytes | memoryview) -> Codestream:
    """The frame header (SOFn, or SOF55 for JPEG-LS) of a JPEG codestream."""
    view = memoryview(data)
    end = min(len(view), HEADER_SEARCH_BYTES)
    position = 2  # after SOI
    while position + 4 <= end:
        if view[position] != 0xFF:
            raise CodestreamError(f"no marker at byte {position} of the JPEG header")
        marker = view[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _JPEG_STANDALONE:
            if marker == 0xD9:
                break
            position += 2
            continue
        (length,) = struct.unpack_from(">H", view, position + 2)
        if length < 2:
            raise CodestreamError(f"JPEG marker FF{marker:02X} has a length of {length}")
        if marker in _JPEG_SOF:
            if position + 2 + 8 > len(view) or length < 8:
                raise CodestreamError("the JPEG frame header is cut short")
            bits, rows, cols, components = struct.unpack_from(">BHHB", view, position + 4)
            if rows == 0:
                raise CodestreamError("the JPEG frame defers its height to a DNL marker, which medlung does not read")
            return Codestream(
                "jpeg-ls" if marker == 0xF7 else "jpeg", rows, cols, components, bits, process=marker, levels=0
            )
        if marker == 0xDA:
            break  # scan data before any frame header
        position += 2 + length
    raise CodestreamError("no JPEG frame header (SOF marker) before the image data")


def parse_j2k(data: bytes | memoryview) -> Codestream:
    """SIZ, COD and CAP of a JPEG 2000 / HTJ2K codestream (a JP2 file is looked through to its codestream box)."""
    view = memoryview(data)
    start = _jp2_codestream_start(view) if bytes(view[4:8]) == b"jP  " else 0
    if bytes(view[start : start + 4]) != b"\xff\x4f\xff\x51":
        raise CodestreamError("the JPEG 2000 codestream does not start with SOC and SIZ")
    position = start + 2
    siz = _j2k_segment(view, position)
    if len(siz) < 38:
        raise CodestreamError("the JPEG 2000 SIZ marker is cut short")
    capabilities, xsiz, ysiz, xosiz, yosiz = struct.unpack_from(">HIIII", siz, 0)
    (components,) = struct.unpack_from(">H", siz, 34)
    if components < 1 or len(siz) < 36 + 3 * components:
        raise CodestreamError(f"the JPEG 2000 SIZ marker declares {components} components it does not describe")
    depth, xr, yr = siz[36], siz[37], siz[38]
    if xosiz >= xsiz or yosiz >= ysiz or xr < 1 or yr < 1:
        raise CodestreamError(f"the JPEG 2000 SIZ marker declares an empty image ({xsiz - xosiz} x {ysiz - yosiz})")
    cols = -(-(xsiz - xosiz) // xr)
    rows = -(-(ysiz - yosiz) // yr)
    levels, high_throughput = 0, bool(capabilities & 0x4000)
    position += 2 + len(siz) + 2
    end = min(len(view), start + HEADER_SEARCH_BYTES)
    while position + 4 <= end:
        (marker,) = struct.unpack_from(">H", view, position)
        if marker in (0xFF90, 0xFF93, 0xFFD9):  # SOT, SOD, EOC: the main header is over
            break
        body = _j2k_segment(view, position)
        if marker == 0xFF52 and len(body) >= 6:  # COD: Scod, SGcod (4 bytes), then the decomposition levels
            levels = body[5]
        elif marker == 0xFF50:  # CAP: Part 15 (HTJ2K) capabilities
            high_throughput = True
        position += 4 + len(body)
    return Codestream(
        "htj2k" if high_throughput else "j2k",
        rows,
        cols,
        components,
        (depth & 0x7F) + 1,
        process=None,
        levels=levels,
        signed=bool(depth & 0x80),
    )


def _j2k_segment(view: memoryview, position: int) -> memoryview:
    """The body of the marker segment at ``position`` (after its 2-byte marker and 2-byte length)."""
    if position + 4 > len(view):
        raise CodestreamError("the JPEG 2000 main header is cut short")
    (length,) = struct.unpack_from(">H", view, position + 2)
    if length < 2 or position + 2 + length > len(view):
        raise CodestreamError(f"a JPEG 2000 marker segment at byte {position} has a broken length ({length})")
    return view[position + 4 : position + 2 + length]


def _jp2_codestream_start(view: memoryview) -> int:
    """Offset of the contiguous codestream box (``jp2c``) of a JP2 file."""
    position = 0
    while position + 8 <= min(len(view), HEADER_SEARCH_BYTES):
        length, kind = struct.unpack_from(">I4s", view, position)
        header = 8
        if length == 1 and position + 16 <= len(view):
            (length,) = struct.unpack_from(">Q", view, position + 8)
            header = 16
        if kind == b"jp2c":
            return position + header
        if length < header:
            break
        position += length
    raise CodestreamError("the JP2 file has no codestream box")


def rle_segments(data: bytes | memoryview) -> list[tuple[int, int]]:
    """``(start, end)`` of each segment of one RLE Lossless frame (PS3.5 G.5), from its 64-byte header.

    Raises
    ------
    CodestreamError
        When the header is short, declares 0 or more than 15 segments, or its offsets are not increasing
        within the frame.
    """
    if len(data) < 64:
        raise CodestreamError(f"the RLE frame is {len(data)} bytes, shorter than its 64-byte header")
    count, *offsets = struct.unpack_from("<16I", data, 0)
    if not 1 <= count <= 15:
        raise CodestreamError(f"the RLE header declares {count} segments (1-15 allowed)")
    starts = offsets[:count]
    if starts[0] != 64 or any(b <= a for a, b in itertools.pairwise(starts)) or starts[-1] >= len(data):
        raise CodestreamError(f"the RLE segment offsets {starts} do not fit a frame of {len(data)} bytes")
    return list(zip(starts, [*starts[1:], len(data)]))


@dataclass(frozen=True)
class Declared:
    """What a DICOM header declares for its pixel data (Rows, Columns, samples and bits)."""

    rows: int
    cols: int
    samples: int
    bits_allocated: int
    bits_stored: int

    @property
    def native_bytes(self) -> int:
        """Bytes of the uncompressed frame."""
        return self.rows * self.cols * self.samples * self.bits_allocated // 8


def check_frame(
    frame: bytes | memoryview, syntax: str, declared: Declared, max_pixels: int | None
) -> Codestream | None:
    """Compare a compressed frame's own header with the DICOM header; ``None`` for RLE (no size of its own).

    Parameters
    ----------
    frame : bytes
        The frame's codestream (its first kilobytes are enough for JPEG and JPEG 2000).
    syntax : str
        ``"jpeg"``, ``"j2k"`` or ``"rle"`` (the family of the transfer syntax).
    declared : Declared
        Rows, Columns, SamplesPerPixel and bits from the DICOM header.
    max_pixels : int or None
        Largest rows x cols accepted.

    Returns
    -------
    Codestream or None

    Raises
    ------
    CodestreamError
        With a sentence saying how the two disagree (size, components, precision) or what is broken.
    """
    if syntax == "rle":
        segments = rle_segments(frame)
        expected = declared.samples * (declared.bits_allocated // 8)
        if len(segments) != expected:
            raise CodestreamError(
                f"the RLE header declares {len(segments)} segments, the DICOM header's samples and bits need {expected}"
            )
        return None
    stream = parse(frame)
    if max_pixels is not None and stream.rows * stream.cols > max_pixels:
        raise CodestreamError(
            f"its {stream.kind.upper()} codestream declares {stream.rows} x {stream.cols} pixels, more than the "
            f"limit of {max_pixels:,}"
        )
    if (stream.rows, stream.cols) != (declared.rows, declared.cols):
        raise CodestreamError(
            f"its {stream.kind.upper()} codestream declares {stream.rows} x {stream.cols} pixels but the DICOM header "
            f"{declared.rows} x {declared.cols}"
        )
    if stream.components != declared.samples:
        raise CodestreamError(
            f"its {stream.kind.upper()} codestream has {stream.components} components but the DICOM header "
            f"{declared.samples} samples per pixel"
        )
    if stream.bits > max(declared.bits_allocated, 16) or stream.bits < 1:
        raise CodestreamError(
            f"its {stream.kind.upper()} codestream declares {stream.bits}-bit samples, more than the DICOM header's "
            f"{declared.bits_allocated} bits allocated"
        )
    return stream

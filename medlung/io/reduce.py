"""Films at reduced resolution: what a decoder gives directly, and area averaging without a float copy of the film.

The network works on a 2 mm grid, 20-25 times coarser than a full-resolution
film; the outputs need the film's native *size*, not its pixels. So:

* JPEG 2000 and HTJ2K are decoded at the wavelet resolution level closest
  above the size asked (OpenJPEG's ``reduce``, through Pillow: it decodes the
  coarse sub-bands only; imagecodecs' OpenJPEG has no such option and
  OpenJPH's ``skipres`` gave wrapped 16-bit values, see docs/benchmarks.md);
* DCT JPEG (baseline, extended 8-bit, progressive) is decoded at 1/2, 1/4 or
  1/8 scale by libjpeg's DCT scaling (Pillow's ``draft``);
* anything else (uncompressed, memory-mapped; JPEG lossless, JPEG-LS, RLE) is
  decoded at full size as stored integers and area-averaged here, strip by
  strip, to exactly the size asked (the windows of
  ``torch.nn.functional.interpolate(mode="area")``), through the film's grey
  look-up per strip: no float copy of the whole film is made.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np

#: Rows converted to float at a time when averaging or converting a full-size film.
STRIP_ROWS = 256


def reduced_size(size: int, level: int) -> int:
    """Pixels along one axis at wavelet level ``level`` (or DCT scale ``2**level``): ``ceil(size / 2**level)``."""
    return -(-int(size) // (1 << int(level)))


def coarsest_level(shape: Sequence[int], need: Sequence[int], most: int) -> int:
    """The largest level ``r <= most`` whose image still has at least ``need`` pixels on each axis."""
    level = 0
    while level < most and all(reduced_size(n, level + 1) >= min(int(k), int(n)) for n, k in zip(shape, need)):
        level += 1
    return level


def shrink_shape(shape: Sequence[int], need: Sequence[int]) -> tuple[int, int]:
    """``need`` clipped to ``shape`` per axis (what area averaging gives: it never enlarges)."""
    return min(int(shape[0]), int(need[0])), min(int(shape[1]), int(need[1]))


def _windows(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of each output pixel's window, as adaptive average pooling takes them."""
    index = np.arange(out, dtype=np.int64)
    return (index * size) // out, -((-(index + 1) * size) // out)


def area_average(
    stored: np.ndarray,
    shapes: Sequence[Sequence[int]],
    grey: Callable[[np.ndarray], np.ndarray] | None = None,
    strip_rows: int = STRIP_ROWS,
) -> list[np.ndarray]:
    """Area-average a 2-D array to each of ``shapes`` in one pass, converting ``strip_rows`` rows at a time.

    Parameters
    ----------
    stored : numpy.ndarray
        ``(rows, cols)``, any dtype (a memory map is read once, in order).
    shapes : sequence of (int, int)
        Output shapes, each at most ``stored.shape`` per axis.
    grey : callable, optional
        Applied to each strip before averaging (the film's grey look-up: stored values -> float32).
    strip_rows : int
        Rows per strip.

    Returns
    -------
    list of numpy.ndarray
        float32 arrays of ``shapes``: the mean of each output pixel's window, the windows of
        ``torch.nn.functional.adaptive_avg_pool2d`` (``interpolate(mode="area")``).
    """
    rows, cols = stored.shape
    plans = []
    for shape in shapes:
        out_rows, out_cols = int(shape[0]), int(shape[1])
        if not (1 <= out_rows <= rows and 1 <= out_cols <= cols):
            raise ValueError(f"area_average shrinks only: {tuple(shape)} from {stored.shape}.")
        col_start, col_end = _windows(cols, out_cols)
        row_start, row_end = _windows(rows, out_rows)
        plans.append((col_start, col_end, row_start, row_end, np.zeros((out_rows, out_cols), np.float64)))
    for top in range(0, rows, strip_rows):
        strip = stored[top : top + strip_rows]
        values = grey(strip) if grey is not None else strip
        count = values.shape[0]
        summed = np.zeros((count, cols + 1), np.float64)
        np.cumsum(values, axis=1, dtype=np.float64, out=summed[:, 1:])
        for col_start, col_end, row_start, row_end, sums in plans:
            by_row = np.zeros((count + 1, len(col_start)), np.float64)
            np.cumsum(summed[:, col_end] - summed[:, col_start], axis=0, out=by_row[1:])
            # the output rows whose windows meet this strip, and the part of each window inside it
            first = int(np.searchsorted(row_end, top, side="right"))
            last = int(np.searchsorted(row_start, top + count, side="left"))
            low = np.clip(row_start[first:last] - top, 0, count)
            high = np.clip(row_end[first:last] - top, 0, count)
            sums[first:last] += by_row[high] - by_row[low]
    results = []
    for col_start, col_end, row_start, row_end, sums in plans:
        counts = (row_end - row_start)[:, None] * (col_end - col_start)[None, :]
        results.append((sums / counts).astype(np.float32))
    return results


#: Where a codec's reduced sample ``k`` sits, in native pixels: the box ``[offset + s*k, offset + s*(k+1))`` of width
#: ``s = 2**level``, with ``offset`` a fraction of ``s`` (edge coordinates: native pixel ``p`` spans ``[p, p+1)``).
#: JPEG 2000's low-pass sample ``k`` is centred on native pixel ``s*k`` (T.800 Annex F: the low band at even
#: positions), so its box starts half a box before it; a DCT-scaled JPEG pixel is the mean of its block.
BOX_OFFSET = {"j2k": lambda s: 0.5 - s / 2.0, "jpeg": lambda s: 0.0}


def box_weights(native: int, out: int, scale: int, offset: float):
    """Area weights ``(out, ceil(native / scale))`` from the codec's reduced samples to ``out`` pixels of the film.

    Output pixel ``j`` covers native ``[j * native / out, (j + 1) * native / out)``; sample ``k`` covers
    ``[offset + scale * k, offset + scale * (k + 1))`` clipped to the film. Each row sums to 1 (a sparse matrix).
    """
    from scipy import sparse

    count = reduced_size(native, scale.bit_length() - 1)
    k = np.arange(count)
    low = np.clip(offset + scale * k, 0, native)
    high = np.clip(offset + scale * (k + 1), 0, native)
    j = np.arange(out)
    start, end = j * native / out, (j + 1) * native / out
    first = np.clip(np.floor((start - offset) / scale).astype(np.int64) - 1, 0, count - 1)
    last = np.clip(np.ceil((end - offset) / scale).astype(np.int64) + 1, 0, count - 1)
    width = int((last - first).max()) + 1
    offsets = np.arange(width)[None]
    columns = first[:, None] + offsets
    inside = columns <= last[:, None]
    columns = np.minimum(columns, count - 1)
    overlap = np.minimum(end[:, None], high[columns]) - np.maximum(start[:, None], low[columns])
    overlap = np.where(inside, np.clip(overlap, 0, None), 0.0)
    overlap /= overlap.sum(axis=1, keepdims=True)
    return sparse.csr_matrix((overlap.ravel(), (np.repeat(j, width), columns.ravel())), shape=(out, count))


def from_level(image: np.ndarray, level: int, kind: str, native: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """A codec's reduced image (level ``level``) area-averaged to ``shape`` of the native film, float32.

    Parameters
    ----------
    image : numpy.ndarray
        ``(ceil(rows / 2**level), ceil(cols / 2**level))`` float values.
    level : int
        Its level.
    kind : str
        ``"j2k"`` or ``"jpeg"`` (where its samples sit: :data:`BOX_OFFSET`).
    native : (int, int)
        The film's native ``(rows, cols)``.
    shape : (int, int)
        The output shape, at most the level's size on each axis.
    """
    scale = 1 << int(level)
    offset = BOX_OFFSET[kind](scale)
    rows = box_weights(int(native[0]), int(shape[0]), scale, offset)
    cols = box_weights(int(native[1]), int(shape[1]), scale, offset)
    out = rows @ np.asarray(image, np.float64)
    return np.ascontiguousarray((cols @ out.T).T, dtype=np.float32)


def convert(stored: np.ndarray, grey: Callable[[np.ndarray], np.ndarray], strip_rows: int = STRIP_ROWS) -> np.ndarray:
    """The whole film through ``grey`` (stored values -> float32), strip by strip into one float32 array."""
    out = np.empty(stored.shape, np.float32)
    for top in range(0, stored.shape[0], strip_rows):
        out[top : top + strip_rows] = grey(stored[top : top + strip_rows])
    return out


def j2k_at_level(codestream: bytes | memoryview, level: int, shape: Sequence[int]) -> np.ndarray:
    """Decode a grey JPEG 2000 / HTJ2K codestream at wavelet level ``level`` (OpenJPEG ``reduce``, through Pillow).

    Parameters
    ----------
    codestream : bytes
        The frame (a J2K codestream or a JP2 file).
    level : int
        Resolution level, at most the codestream's decomposition levels.
    shape : (int, int)
        The full-resolution ``(rows, cols)`` (from SIZ).

    Returns
    -------
    numpy.ndarray
        ``(ceil(rows / 2**level), ceil(cols / 2**level))``, uint8 or uint16 as stored.

    Raises
    ------
    OSError, ValueError
        When Pillow cannot decode it (the caller decodes at full size instead).
    """
    from PIL import Image, ImageFile

    image = Image.open(io.BytesIO(bytes(codestream)), formats=["JPEG2000"])
    expected = (reduced_size(shape[1], level), reduced_size(shape[0], level))
    if level:
        # Pillow rounds the reduced size as (n + 2**r / 2) // 2**r, OpenJPEG as ceil(n / 2**r): where they
        # differ, Pillow's buffer is a pixel short and the decode fails. Give it OpenJPEG's size.
        image._reduce = level  # type: ignore[attr-defined]
        image._size = expected
        tile = image.tile[0]
        args: tuple = tuple(tile.args or ())
        image.tile = [ImageFile._Tile(tile.codec_name, (0, 0, *expected), tile.offset, (args[0], level, 0, *args[3:]))]
    ImageFile.ImageFile.load(image)
    if image.size != expected or image.mode not in ("L", "I;16", "I;16L", "I;16B"):
        raise ValueError(f"Pillow decoded {image.size} {image.mode}, expected {expected} grey")
    return np.asarray(image)


def jpeg_at_scale(codestream: bytes | memoryview, level: int, shape: Sequence[int]) -> np.ndarray:
    """Decode an 8-bit grey DCT JPEG at scale ``1 / 2**level`` (libjpeg DCT scaling through Pillow's ``draft``).

    Returns ``(ceil(rows / 2**level), ceil(cols / 2**level))`` uint8; raises ``ValueError`` when Pillow
    gave another size or mode (the caller decodes at full size instead).
    """
    from PIL import Image

    image = Image.open(io.BytesIO(bytes(codestream)), formats=["JPEG"])
    scale = 1 << level
    if level:
        image.draft("L", (int(shape[1]) // scale, int(shape[0]) // scale))
    image.load()
    expected = (reduced_size(shape[1], level), reduced_size(shape[0], level))
    if image.size != expected or image.mode != "L":
        raise ValueError(f"Pillow decoded {image.size} {image.mode}, expected {expected} L")
    return np.asarray(image)

"""Reading and writing raster films (PNG, JPEG, TIFF) with their spacing.

PNG carries spacing in its pHYs chunk as integer pixels per metre, x (columns)
first: ``col_mm = 1000 / ppm_x`` and ``row_mm = 1000 / ppm_y``. JPEG and TIFF
resolutions are screen/print densities, not detector spacings, so they are
not used.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from medlung.errors import SpacingWarning, UnreadableFileError, UnsupportedImageError
from medlung.film import Film
from medlung.spacing import Spacing

_MM_PER_INCH = 25.4
#: pHYs values that image software writes by default (72 and 96 dpi): not spacings.
_SOFTWARE_DEFAULT_PPM = {2835, 3780}


def read_raster_film(path: str | Path, max_pixels: int | None = None) -> Film:
    """Read a PNG (8/16-bit, grey or colour), JPEG or TIFF film.

    Parameters
    ----------
    path : str or Path
        The file.
    max_pixels : int, optional
        Refuse a declared size above this before decoding.

    Returns
    -------
    Film
        Pixels as float32 ``(rows, cols)``, colour converted to grey; spacing
        from the PNG pHYs chunk when it holds one, else unknown.

    Raises
    ------
    UnreadableFileError
        If the file cannot be decoded (truncated, not an image).
    UnsupportedImageError
        If it holds several frames.
    """
    from medlung.io.files import open_regular

    path = Path(path)
    try:
        with open_regular(path) as handle, Image.open(handle) as image:
            width, height = image.size
            if width < 1 or height < 1:
                raise UnsupportedImageError(f"declares an empty image ({width} x {height})", path, "Give a real film.")
            if max_pixels is not None and width * height > max_pixels:
                raise UnsupportedImageError(
                    f"declares {height} x {width} pixels, more than the limit of {max_pixels:,}",
                    path,
                    "Raise --max-pixels if the film is real.",
                )
            if image.format == "PNG":
                check_png_rows(handle, path)
                handle.seek(0)
            image.load()
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                raise UnsupportedImageError(f"multi-frame image ({frames} frames)", path, "Give a single-frame film.")
            pixels, value_range, mode = _grey_pixels(image)
            info = dict(image.info)
            image_format = image.format or path.suffix.lstrip(".").upper()
    except Image.DecompressionBombError as exc:  # Pillow's own guard fires at open, before our check
        declared = "".join(c for c in str(exc).split("pixels")[0] if c.isdigit())
        limit = f"the limit of {max_pixels:,}" if max_pixels else "Pillow's decompression-bomb limit"
        raise UnsupportedImageError(
            f"declares {int(declared or 0):,} pixels, more than {limit}",
            path,
            "Raise --max-pixels if the film is real.",
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UnreadableFileError(
            f"image could not be decoded ({type(exc).__name__}: {exc})",
            path,
            "Check that the file is complete and is a PNG, JPEG or DICOM film.",
        ) from None

    notes: list[str] = []
    spacing = None
    if image_format == "PNG":
        spacing = png_spacing(info, notes)
    for note in notes:
        warnings.warn(f"{path}: {note}", SpacingWarning, stacklevel=2)
    return Film(
        pixels=pixels,
        spacing=spacing,
        spacing_source="png-pHYs" if spacing else "unknown",
        photometric="MONOCHROME2",
        orientation=None,
        path=path,
        dataset=None,
        value_range=value_range,
        facts={"format": image_format, "mode": mode, "bits_stored": 8 if value_range[1] <= 255 else 16},
        warnings=tuple(notes),
    )


#: Channels of each PNG colour type (grey, RGB, palette, grey + alpha, RGBA).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Adam7 passes: (first row, first column, row step, column step).
_ADAM7 = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1))


def png_raw_bytes(width: int, height: int, bit_depth: int, colour_type: int, interlace: int) -> int:
    """Bytes of a PNG's filtered scanlines (a filter byte and the row's samples per row, per Adam7 pass)."""
    bits = _PNG_CHANNELS.get(colour_type, 4) * bit_depth

    def rows_of(w: int, h: int) -> int:
        return 0 if w == 0 or h == 0 else h * (1 + (w * bits + 7) // 8)

    if not interlace:
        return rows_of(width, height)
    return sum(rows_of(max(0, -(-(width - c) // dc)), max(0, -(-(height - r) // dr))) for r, c, dr, dc in _ADAM7)


def check_png_rows(handle, path: Path, chunk: int = 1 << 20) -> None:
    """Refuse a PNG whose image data holds fewer rows than its header declares (Pillow fills them with black).

    Inflates the IDAT stream once without keeping it (``chunk`` bytes of output at a time).

    Raises
    ------
    UnreadableFileError
        With the number of rows the data holds.
    """
    import struct
    import zlib

    handle.seek(8)
    header = None
    stream = zlib.decompressobj()
    produced = 0
    expected = None
    while True:
        head = handle.read(8)
        if len(head) < 8:
            break
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", handle.read(13))
            expected = png_raw_bytes(header[0], header[1], header[2], header[3], header[6])
            handle.seek(length - 13 + 4, 1)
            continue
        if kind == b"IDAT" and expected is not None:
            left = length
            while left > 0 and not stream.eof:
                data = handle.read(min(left, chunk))
                if not data:
                    break
                left -= len(data)
                while data and not stream.eof and produced <= expected:
                    try:
                        produced += len(stream.decompress(data, chunk))
                    except zlib.error:
                        return  # a broken stream: Pillow's own error says so
                    data = stream.unconsumed_tail
            handle.seek(left + 4, 1)
            if produced > expected or stream.eof:
                break
            continue
        if kind == b"IEND":
            break
        handle.seek(length + 4, 1)
    if header is None or expected is None or produced >= expected:
        return
    row_bytes = png_raw_bytes(header[0], 1, header[2], header[3], 0)
    held = produced // row_bytes if not header[6] else None
    raise UnreadableFileError(
        f"its image data holds {f'{held} of {header[1]} rows' if held is not None else 'fewer rows than declared'} "
        f"({produced:,} of {expected:,} bytes): the rest would be black",
        path,
        "The file is truncated or damaged; export it again.",
    )


def png_spacing(info: dict, notes: list[str] | None = None) -> Spacing | None:
    """Spacing from the pHYs chunk of a PNG, as Pillow reports it in ``info``.

    Parameters
    ----------
    info : dict
        ``PIL.Image.info`` of a PNG: ``dpi`` when pHYs has metre units,
        ``aspect`` when it only gives an aspect ratio.
    notes : list of str, optional
        Receives one line when a pHYs chunk is present but not a spacing.

    Returns
    -------
    tuple of float or None
        ``(row_mm, col_mm)``: the simplest decimal values that round back to
        the stored integer pixels per metre.
    """
    notes = [] if notes is None else notes
    if "dpi" not in info:
        if "aspect" in info:
            notes.append("pHYs chunk gives only an aspect ratio (unit unknown): spacing unknown")
        return None
    ppm_x, ppm_y = (round(d / 0.0254) for d in info["dpi"])
    if ppm_x <= 0 or ppm_y <= 0:
        notes.append(f"pHYs chunk has non-positive pixels per metre ({ppm_x}, {ppm_y}): spacing unknown")
        return None
    if ppm_x in _SOFTWARE_DEFAULT_PPM and ppm_y in _SOFTWARE_DEFAULT_PPM:
        notes.append(
            f"pHYs chunk holds a software default ({ppm_x} px/m = {ppm_x * 0.0254:.0f} dpi), "
            "not a detector spacing: ignored; give --spacing if you know it"
        )
        return None
    return _ppm_to_mm(ppm_y), _ppm_to_mm(ppm_x)


def save_png(path: str | Path, pixels: np.ndarray, spacing: Spacing | None, level: int = 6, strategy: int = 0) -> None:
    """Write a grey 8-bit or 16-bit PNG, with its spacing in the pHYs chunk.

    Parameters
    ----------
    path : str or Path
        Destination (written as given; callers handle atomic replacement).
    pixels : numpy.ndarray
        ``(rows, cols)`` uint8 or uint16, or ``(rows, cols, 3)`` uint8 RGB.
    spacing : tuple of float or None
        ``(row_mm, col_mm)``; ``None`` writes no pHYs chunk.
    level : int
        zlib compression level, 0-9 (6: zlib's and Pillow's default).
    strategy : int
        zlib strategy (``zlib.Z_DEFAULT_STRATEGY`` 0, ``zlib.Z_RLE`` 3 ...).
    """
    if pixels.dtype == np.uint16 and pixels.ndim == 2:
        image = Image.fromarray(pixels)  # mode I;16
    elif pixels.dtype == np.uint8:
        image = Image.fromarray(pixels)
    else:
        raise TypeError(f"save_png needs uint8 or 2-D uint16 pixels, got {pixels.dtype} {pixels.shape}.")
    options = {}
    if spacing is not None:
        # Pillow writes int(dpi / 0.0254 + 0.5) pixels per metre, x (columns) first.
        options["dpi"] = (_MM_PER_INCH / spacing[1], _MM_PER_INCH / spacing[0])
    image.save(path, format="PNG", compress_level=level, compress_type=strategy, **options)


def _ppm_to_mm(ppm: int) -> float:
    """The shortest decimal millimetre value that maps back to ``ppm`` pixels per metre."""
    exact = 1000.0 / ppm
    for decimals in range(3, 10):
        candidate = round(exact, decimals)
        if candidate > 0 and round(1000.0 / candidate) == ppm:
            return candidate
    return exact


def _grey_pixels(image: Image.Image) -> tuple[np.ndarray, tuple[float, float], str]:
    """Grey float32 pixels, their nominal range and the source mode."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image).astype(np.float32)
        high = 65535.0 if mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        return array, (0.0, high), mode
    if mode == "F":
        array = np.asarray(image, dtype=np.float32)
        return array, (float(array.min(initial=0)), float(array.max(initial=1))), mode
    if mode in ("1", "L", "LA", "P", "PA"):
        grey = image.convert("L") if mode != "P" or _palette_is_grey(image) else image.convert("RGB")
        if grey.mode == "L":
            return np.asarray(grey, dtype=np.float32), (0.0, 255.0), mode
        image = grey
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return np.ascontiguousarray(rgb[..., 0]), (0.0, 255.0), mode
    luma = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601
    return luma.astype(np.float32), (0.0, 255.0), mode


def _palette_is_grey(image: Image.Image) -> bool:
    palette = np.asarray(image.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
    return bool(len(palette)) and bool(
        np.all(palette[:, 0] == palette[:, 1]) and np.all(palette[:, 1] == palette[:, 2])
    )

"""Overlay pictures: the film with the right and left lungs in two colours and their areas."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from medlung.atomic import write_atomically
from medlung.labels import COLOURS

#: Longest side of an overlay picture, pixels (it is a picture, not a measurement).
MAX_SIDE = 2048
#: zlib level of overlay PNGs (0-9). With the Up filter, level 1 is a third of level 6's time for 1.4 times
#: the bytes (1.6 MB, 2048 px; benchmarks/fullres.py --parts).
OVERLAY_PNG_LEVEL = 1


def overlay_picture(pixels: np.ndarray, labels: np.ndarray, lines: list[str], max_side: int = MAX_SIDE) -> Image.Image:
    """Blend the lungs over the film and write ``lines`` of text in the corner.

    Parameters
    ----------
    pixels : numpy.ndarray
        The film, MONOCHROME2 polarity, any range: ``(rows, cols)``, or a reduced-resolution image of it
        at least the picture's size (:meth:`medlung.film.Film.pixels_at_least`).
    labels : numpy.ndarray
        ``(rows, cols)`` 0/1/2 label map on the film's native grid: the picture's size follows it.
    lines : list of str
        Text to draw (areas, orientation assumption).
    max_side : int
        Pictures larger than this are shrunk (same aspect ratio).
    """
    from medlung.film import preview_shape

    rows, cols = preview_shape(labels.shape, max_side)
    size = (cols, rows)
    # shrink first (a box reduction by a whole factor, then bilinear: reducing_gap), then window on the picture's
    # own pixels: a full-resolution film is 5x more pixels to sort
    shrunk = np.asarray(
        Image.fromarray(np.asarray(pixels, np.float32)).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    )
    low, high = np.percentile(shrunk, (0.5, 99.5))
    grey = (np.clip((shrunk - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)
    small = np.asarray(Image.fromarray(labels.astype(np.uint8)).resize(size, Image.Resampling.NEAREST))
    # one look-up per pixel: grey, each lung blended 60/40 with its colour, each lung's contour in its colour
    values = list(COLOURS)
    table = np.repeat(np.arange(256, dtype=np.float32)[:, None], 3, axis=1)[None].repeat(1 + 2 * len(values), 0)
    code = np.zeros(small.shape, np.uint16)
    for index, value in enumerate(values, start=1):
        tint = np.array(COLOURS[value], np.float32)
        table[index] = 0.6 * table[index] + 0.4 * tint
        table[len(values) + index] = tint
        inside = small == value
        code[inside] = index
        code[inside & ~_eroded(inside)] = len(values) + index
    rgb = np.take(table.astype(np.uint8).reshape(-1, 3), code * 256 + grey, axis=0)
    picture = Image.fromarray(rgb)
    draw = ImageDraw.Draw(picture)
    text_size = max(12, size[1] // 40)  # pixels
    font = ImageFont.load_default(size=text_size)
    y = 5
    for line in lines:
        colour = (255, 255, 255)
        if line.lower().startswith("right"):
            colour = COLOURS[1]
        elif line.lower().startswith("left"):
            colour = COLOURS[2]
        draw.text((6, y), line, fill=colour, font=font, stroke_width=2, stroke_fill=(0, 0, 0))
        y += int(text_size * 1.3)
    return picture


def write_overlay(
    path: str | Path, pixels: np.ndarray, labels: np.ndarray, lines: list[str], overwrite: bool = False
) -> Path:
    """Write :func:`overlay_picture` as a PNG (``<stem>_overlay.png``)."""
    data = png_rgb_bytes(np.asarray(overlay_picture(pixels, labels, lines)))
    return write_atomically(path, lambda tmp: tmp.write_bytes(data), overwrite)


def png_rgb_bytes(rgb: np.ndarray, level: int = OVERLAY_PNG_LEVEL) -> bytes:
    """Encode an 8-bit RGB picture as PNG, every row with the Up filter.

    Pillow tries five filters on every row; for a picture of a film the Up
    filter alone gives about the same size (1.6 MB against 1.7 MB at 2048 px)
    in half the time (0.08 against 0.17 CPU s).

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(rows, cols, 3)`` uint8.
    level : int
        zlib level, 0-9.
    """
    rows, cols, _ = rgb.shape
    flat = np.ascontiguousarray(rgb, dtype=np.uint8).reshape(rows, cols * 3)
    lines = np.empty((rows, cols * 3 + 1), np.uint8)
    lines[:, 0] = 2  # Up: each byte minus the one above it (the first row: minus 0)
    lines[0, 1:] = flat[0]
    np.subtract(flat[1:], flat[:-1], out=lines[1:, 1:])

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", cols, rows, 8, 2, 0, 0, 0)  # 8-bit RGB, deflate, adaptive filters, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(lines.data, level))
        + chunk(b"IEND", b"")
    )


def _eroded(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_erosion(mask, iterations=max(1, max(mask.shape) // 400))


def area_lines(masks) -> list[str]:
    """The lung areas of a result as overlay text, each lung named in its convention (``right lung field``,
    ``left lung (anatomical)``): cm² when calibrated, else pixels and why."""
    from medlung import labels as label_table

    convention = getattr(masks, "convention", None) or "field"
    right, left = (lung.segment_label(convention).lower() for lung in label_table.LUNGS)
    if masks.areas_cm2:
        a = masks.areas_cm2
        return [f"{right} {a['right']:.1f} cm2", f"{left} {a['left']:.1f} cm2", f"total {a['total']:.1f} cm2"]
    p = masks.areas_px
    return [f"{right} {p['right']} px", f"{left} {p['left']} px", "spacing unknown: px, not cm2 (see --spacing)"]

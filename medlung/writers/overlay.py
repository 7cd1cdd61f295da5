"""Overlay pictures: the film with the right and left lungs in two colours and their areas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from medlung.labels import COLOURS
from medlung.writers.atomic import write_atomically

#: Longest side of an overlay picture, pixels (it is a picture, not a measurement).
MAX_SIDE = 2048
#: zlib level of overlay PNGs (0-9).
OVERLAY_PNG_LEVEL = 1


def overlay_picture(pixels: np.ndarray, labels: np.ndarray, lines: list[str], max_side: int = MAX_SIDE) -> Image.Image:
    """Blend the lungs over the film and write ``lines`` of text in the corner.

    Parameters
    ----------
    pixels : numpy.ndarray
        ``(rows, cols)`` film, MONOCHROME2 polarity, any range.
    labels : numpy.ndarray
        ``(rows, cols)`` 0/1/2 label map on the same grid.
    lines : list of str
        Text to draw (areas, orientation assumption).
    max_side : int
        Pictures larger than this are shrunk (same aspect ratio).
    """
    scale = min(1.0, max_side / max(pixels.shape))
    size = (max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[0] * scale)))
    # shrink first, then window on the picture's own pixels: a full-resolution film is 5x more pixels to sort
    shrunk = np.asarray(Image.fromarray(np.asarray(pixels, np.float32)).resize(size, Image.BILINEAR))
    low, high = np.percentile(shrunk, (0.5, 99.5))
    grey = np.clip((shrunk - low) / max(high - low, 1e-6), 0, 1)
    film = Image.fromarray((grey * 255).astype(np.uint8)).convert("RGB")
    small = np.asarray(Image.fromarray(labels.astype(np.uint8)).resize(size, Image.NEAREST))
    rgb = np.asarray(film, dtype=np.float32)
    for value, colour in COLOURS.items():
        inside = small == value
        rgb[inside] = 0.6 * rgb[inside] + 0.4 * np.array(colour, np.float32)
        edge = inside & ~_eroded(inside)
        rgb[edge] = colour
    picture = Image.fromarray(rgb.astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=max(12, size[1] // 40))
    y = 5
    for line in lines:
        colour = (255, 255, 255)
        if line.lower().startswith("right"):
            colour = COLOURS[1]
        elif line.lower().startswith("left"):
            colour = COLOURS[2]
        draw.text((6, y), line, fill=colour, font=font, stroke_width=2, stroke_fill=(0, 0, 0))
        y += int(font.size * 1.3)
    return picture


def write_overlay(path: str | Path, pixels: np.ndarray, labels: np.ndarray, lines: list[str],
                  overwrite: bool = False) -> Path:
    """Write :func:`overlay_picture` as a PNG (``<stem>_overlay.png``)."""
    picture = overlay_picture(pixels, labels, lines)
    # a picture, not data: zlib level 1 is a third of level 6's time for a third more bytes (1.9 MB, 2048 px)
    return write_atomically(path, lambda tmp: picture.save(tmp, format="PNG", compress_level=OVERLAY_PNG_LEVEL),
                            overwrite)


def _eroded(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_erosion(mask, iterations=max(1, max(mask.shape) // 400))


def area_lines(masks) -> list[str]:
    """The lung areas of a result as overlay text: cm² when calibrated, else pixels and a warning."""
    if masks.areas_cm2:
        a = masks.areas_cm2
        lines = [f"right lung {a['right']:.1f} cm2", f"left lung {a['left']:.1f} cm2", f"total {a['total']:.1f} cm2"]
    else:
        p = masks.areas_px
        lines = [f"right lung {p['right']} px", f"left lung {p['left']} px", "spacing unknown: not calibrated"]
    return lines

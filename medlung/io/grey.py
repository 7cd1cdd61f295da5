"""A DICOM film's grey pipeline as one look-up: stored values -> Modality LUT -> VOI -> MONOCHROME2, float32.

DICOM PS3.3 C.11 and C.8.11.6: stored values -> Modality LUT (rescale or LUT
Sequence) -> VOI LUT Sequence or the first window, when present -> polarity
(MONOCHROME1 is inverted; Presentation LUT Shape INVERSE inverts once more).
Every step works on one value at a time, so for integers of at most 16 bits
the whole pipeline is computed once on each possible stored value (a table of
at most 65536 entries) and the film is looked up in it, strip by strip: the
same float32 values as applying the steps to the whole film in float64, with
no float64 copy of the film. Wider values (32-bit) go through the steps strip
by strip.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut, apply_windowing

#: Widest range of stored values turned into one look-up table (beyond it: the steps per strip).
TABLE_LIMIT = 1 << 17


def stored_range(ds: Dataset) -> tuple[float, float]:
    """The nominal range of the stored values (BitsStored, PixelRepresentation)."""
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)) or 16)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    return 0.0, float(2**bits - 1)


def lut_range(item: Dataset) -> tuple[float, float]:
    """The output range of a LUT Sequence item (its descriptor's bit depth)."""
    return 0.0, float(2 ** int(item.LUTDescriptor[2]) - 1)


def modality_range(ds: Dataset) -> tuple[float, float]:
    """Nominal output range of the Modality LUT."""
    if ds.get("ModalityLUTSequence"):
        return lut_range(ds.ModalityLUTSequence[0])
    low, high = stored_range(ds)
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    ends = sorted((low * slope + intercept, high * slope + intercept))
    return ends[0], ends[1]


def describe_modality_lut(ds: Dataset) -> str | None:
    """``"Modality LUT Sequence"``, ``"rescale slope S intercept I"`` or ``None`` (identity)."""
    if ds.get("ModalityLUTSequence"):
        return "Modality LUT Sequence"
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and (float(slope) != 1.0 or float(intercept or 0) != 0.0):
        return f"rescale slope {float(slope):g} intercept {float(intercept or 0):g}"
    return None


def _first(value) -> float:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def apply_voi(pixels: np.ndarray, ds: Dataset, notes: list[str]):
    """Apply the VOI LUT Sequence or the first window; return ``((pixels, range), description)`` or ``(None, None)``."""
    if ds.get("VOILUTSequence"):
        try:
            if pixels.dtype.kind == "f":
                if not np.array_equal(pixels, np.round(pixels)):
                    raise ValueError("the Modality LUT output is not integer, so it cannot index a LUT")
                pixels = pixels.astype(np.int64)
            out = apply_voi_lut(pixels, ds, index=0, prefer_lut=True)
            return (out.astype(np.float64, copy=False), lut_range(ds.VOILUTSequence[0])), "VOI LUT Sequence"
        except Exception as exc:
            notes.append(f"VOI LUT Sequence unusable ({exc}): ignored")
    if "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            center = _first(ds.WindowCenter)
            width = _first(ds.WindowWidth)
            if not (np.isfinite(center) and np.isfinite(width) and width >= 1):
                raise ValueError(f"center {center:g}, width {width:g}")
            out = apply_windowing(pixels, ds, index=0)
            return (out.astype(np.float64, copy=False), modality_range(ds)), f"window {center:g}/{width:g}"
        except Exception as exc:
            notes.append(f"window unusable ({exc}): ignored")
    return None, None


def _as_float(pixels: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """float32 straight away when exact (integers of at most 16 bits, an integer range), else float64."""
    if pixels.dtype.kind in "iu" and pixels.dtype.itemsize <= 2 and all(float(v).is_integer() for v in value_range):
        return pixels.astype(np.float32)
    return pixels.astype(np.float64, copy=False)


class GreyChain:
    """The grey pipeline of one DICOM header, decided once and applied to stored values of any resolution.

    Parameters
    ----------
    ds : pydicom.Dataset
        The header (Modality LUT, VOI LUT / window, PhotometricInterpretation, Presentation LUT Shape).
    low, high : int
        The smallest and largest stored value of the film (after the unused high bits are cleared):
        the table covers them.
    dtype : numpy.dtype
        The stored values' integer type.

    Attributes
    ----------
    value_range : tuple of float
        Nominal range of the output (before inversion the same), for intensity scaling.
    voi : str or None
        The VOI step applied (``"VOI LUT Sequence"``, ``"window C/W"``) or ``None``.
    modality_lut : str or None
        The Modality LUT applied, in words.
    inverted : bool
        MONOCHROME1 or Presentation LUT Shape INVERSE: displayed inverted.
    notes : list of str
        VOI steps present but unusable (skipped).
    """

    def __init__(self, ds: Dataset, low: int, high: int, dtype: np.dtype) -> None:
        self.ds, self.low, self.high, self.dtype = ds, int(low), int(high), np.dtype(dtype)
        self.notes: list[str] = []
        self.modality_lut = describe_modality_lut(ds)
        photometric = str(ds.PhotometricInterpretation).strip().upper()
        shape = str(ds.get("PresentationLUTShape", "") or "").strip().upper()
        # MONOCHROME1 is displayed inverted. Presentation LUT Shape INVERSE also asks for an inverted display;
        # DX (PS3.3 C.8.11.6.1.2) *requires* INVERSE with MONOCHROME1, where both name the same single
        # inversion: inverting twice would show bone dark (checked on dx_image.dcm).
        self.inverted = photometric == "MONOCHROME1" or shape == "INVERSE"
        self.tabled = self.high - self.low < TABLE_LIMIT
        probe = (
            np.arange(self.low, self.high + 1, dtype=np.int64).astype(self.dtype)
            if self.tabled
            else np.array([self.low, self.high], dtype=self.dtype)
        )
        self.value_range = modality_range(ds)
        self.voi: str | None = None
        self._use_voi = False
        out = self._steps(probe[None], decide=True)
        self.table = out[0].astype(np.float32) if self.tabled else None

    def _steps(self, stored: np.ndarray, decide: bool = False) -> np.ndarray:
        pixels = apply_modality_lut(stored, self.ds)
        if decide or self._use_voi:
            voi, description = apply_voi(pixels, self.ds, self.notes if decide else [])
            if decide:
                self._use_voi, self.voi = voi is not None, description
                if voi is not None:
                    self.value_range = voi[1]
            if voi is not None:
                pixels = voi[0]
            elif not decide:
                raise ValueError("the VOI step that worked on the film's value range failed on its pixels")
        pixels = _as_float(pixels, self.value_range)
        if self.inverted:
            pixels = (self.value_range[0] + self.value_range[1]) - pixels
        return pixels

    def __call__(self, stored: np.ndarray) -> np.ndarray:
        """float32 film values of ``stored`` (any shape; values outside ``[low, high]`` count as the nearest end)."""
        if self.table is not None:
            index = stored.astype(np.intp)
            index -= self.low
            # a wavelet level's low-pass samples can overshoot the stored range a little near sharp edges
            np.clip(index, 0, len(self.table) - 1, out=index)
            return np.take(self.table, index)
        return self._steps(np.asarray(stored)).astype(np.float32)


def clear_unused_bits(stored: np.ndarray, bits_stored: int, signed: bool) -> np.ndarray:
    """Clear (unsigned) or sign-extend (signed) the bits above BitsStored, as pydicom's ``pixel_array`` does.

    Returns ``stored`` itself when nothing needs changing, else a corrected copy in the signed or unsigned type.
    """
    bits = stored.dtype.itemsize * 8
    kind = np.dtype(f"{'i' if signed else 'u'}{stored.dtype.itemsize}")
    values = stored.view(kind.newbyteorder(stored.dtype.byteorder)) if stored.dtype != kind else stored
    if bits_stored >= bits:
        return values.astype(kind, copy=False)
    shift = bits - bits_stored
    if not signed:
        limit = (1 << bits_stored) - 1
        if int(values.max(initial=0)) <= limit:
            return values.astype(kind, copy=False)
        return values.astype(kind) & kind.type(limit)
    out = values.astype(kind)
    np.left_shift(out, shift, out=out)
    np.right_shift(out, shift, out=out)
    return out


def value_bounds(stored: np.ndarray, strip_rows: int = 1024) -> tuple[int, int]:
    """Smallest and largest value of ``stored``, read strip by strip (a memory map is read once)."""
    low, high = None, None
    for top in range(0, stored.shape[0], strip_rows):
        strip = stored[top : top + strip_rows]
        a, b = int(strip.min()), int(strip.max())
        low = a if low is None else min(low, a)
        high = b if high is None else max(high, b)
    return (low or 0) if low is not None else 0, high if high is not None else 0


def chain_for(ds: Dataset, stored: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The :class:`GreyChain` of ``ds`` covering the values of ``stored``."""
    low, high = value_bounds(stored)
    return GreyChain(ds, low, high, stored.dtype)

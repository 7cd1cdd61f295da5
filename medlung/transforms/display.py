"""The standard display as a transform: a film ``MetaTensor`` turned as its PatientOrientation says.

The network sees every film in the standard display of a frontal chest film
(``L\\F``, see :mod:`medlung.orientation`). :class:`ToStandardDisplay` puts a
film loaded by :class:`~medlung.transforms.LoadFilm` there by at most one
transpose and two flips (exact, no resampling), swaps the spacing on a quarter
turn, and records in the meta how to go back: ``display`` (the
:class:`~medlung.orientation.DisplayTransform` as three booleans: transpose,
flip rows, flip columns) and ``stored_orientation`` (the PatientOrientation as
stored). :func:`medlung.inference.native_grid.native_labels` reads them to put
the labels back on the stored grid. Both doors (the Segmenter and the bundle's
``preprocessing`` property) run this step through
:func:`medlung.transforms.presets.inference_transforms`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from medlung.orientation import STANDARD_DISPLAY, DisplayTransform, display_transform


def display_of(meta: Mapping) -> DisplayTransform:
    """The display transform a :class:`ToStandardDisplay` recorded in a film's meta (identity if none ran)."""
    flags = meta.get("display")
    return DisplayTransform(*(bool(f) for f in flags)) if flags is not None else DisplayTransform()


class ToStandardDisplay(Transform):
    """Turn a channel-first film ``MetaTensor`` ``(C, rows, cols)`` into the standard display.

    The transform comes from the film's PatientOrientation (meta
    ``orientation``; absent or not frontal: unchanged, see
    :func:`medlung.orientation.display_transform`) unless one is given (an
    orientation detected from the film itself).
    """

    def __call__(self, image: MetaTensor, display: DisplayTransform | None = None) -> MetaTensor:
        meta = {k: v for k, v in image.meta.items() if k != "affine"}
        stored_orientation = meta.get("orientation")
        display = display_transform(stored_orientation) if display is None else display
        meta.update(
            display=(display.transpose, display.flip_rows, display.flip_cols), stored_orientation=stored_orientation
        )
        if display.identity:
            return MetaTensor(image.as_tensor(), affine=image.affine, meta=meta)
        pixels = image.as_tensor()
        if display.transpose:  # the same order as DisplayTransform.to_display: transpose, rows, columns
            pixels = pixels.transpose(-2, -1)
        if display.flip_rows:
            pixels = pixels.flip(-2)
        if display.flip_cols:
            pixels = pixels.flip(-1)
        spacing = display.display_spacing(meta.get("spacing_mm"))
        affine = torch.eye(3, dtype=torch.float64)
        if meta.get("spacing_known") and spacing is not None:
            affine[0, 0], affine[1, 1] = spacing
        meta.update(
            spacing_mm=spacing,
            spatial_shape=np.array(display.display_shape(image.shape[-2:])),
            film_shape=display.display_shape(meta.get("film_shape", image.shape[-2:])),
            orientation=STANDARD_DISPLAY if stored_orientation else None,
        )
        return MetaTensor(pixels.contiguous(), affine=affine, meta=meta)


class ToStandardDisplayd(MapTransform):
    """Dictionary wrapper of :class:`ToStandardDisplay`.

    Parameters
    ----------
    keys : str or sequence of str
        Keys holding film ``MetaTensor`` objects.
    display_key : str
        Key that may hold a :class:`~medlung.orientation.DisplayTransform` to
        use instead of the PatientOrientation's (the Segmenter's detected
        orientation); anything else there is ignored.
    """

    def __init__(self, keys: KeysCollection, display_key: str = "display", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.display_key = display_key
        self.turn = ToStandardDisplay()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        given = d.get(self.display_key)
        display = given if isinstance(given, DisplayTransform) else None
        for key in self.key_iterator(d):
            d[key] = self.turn(d[key], display)
        return d

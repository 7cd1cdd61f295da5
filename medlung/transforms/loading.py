"""Loading films as MONAI ``MetaTensor`` objects whose affine carries the spacing."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from medlung.film import Film, working_shape
from medlung.io import load_film


def film_to_metatensor(film: Film, working_spacing: float | None = None) -> MetaTensor:
    """Wrap a film's pixels as a channel-first MONAI ``MetaTensor``.

    Parameters
    ----------
    film : Film
        The film.
    working_spacing : float, optional
        The working grid the film is going to, mm. A film read with ``decode="reduced"`` then gives only
        what that grid needs (:meth:`Film.pixels_at_least`: a resolution level or an area average, at
        least the working grid's size, at most the native size); ``None``, or a film whose native pixels
        are decoded, gives the native pixels.

    Returns
    -------
    monai.data.MetaTensor
        float32, shape ``(1, rows, cols)`` (or the reduced image's). The 2-D affine is
        ``diag(row_mm, col_mm, 1)`` -- spatial axis 0 is the row axis --
        so MONAI spacing transforms see the true spacing. When the spacing
        is unknown the affine is the identity and ``meta["spacing_known"]``
        is False: callers must not read it as 1 mm. ``meta["film_shape"]`` is the native
        ``(rows, cols)``, whatever the tensor's size.
    """
    affine = torch.eye(3, dtype=torch.float64)
    if film.spacing is not None:
        affine[0, 0], affine[1, 1] = film.spacing
    meta = {
        "filename_or_obj": str(film.path) if film.path else "",
        "spatial_shape": np.array(film.shape),
        "original_channel_dim": "no_channel",
        "spacing_mm": film.spacing,
        "spacing_known": film.spacing is not None,
        "spacing_source": film.spacing_source,
        "photometric": film.photometric,
        "orientation": film.orientation,
        "value_range": film.value_range,
        "film_shape": tuple(film.shape),
    }
    if working_spacing is not None and film.source is not None:
        target, _ = working_shape(film.shape, film.spacing, working_spacing)
        pixels = film.pixels_at_least(target)
    else:
        pixels = film.pixels
    tensor = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))[None]
    return MetaTensor(tensor, affine=affine, meta=meta)


class LoadFilm(Transform):
    """Load a film (path or :class:`Film`) as a channel-first ``MetaTensor``.

    Parameters
    ----------
    spacing : float, str or tuple of float, optional
        Spacing in mm to use instead of the file's (see :func:`medlung.load_film`).
    """

    def __init__(self, spacing: float | str | Sequence[float] | None = None) -> None:
        self.spacing = spacing

    def __call__(self, source: str | Path | Film) -> MetaTensor:
        film = source if isinstance(source, Film) else load_film(source, spacing=self.spacing)
        return film_to_metatensor(film)


class LoadFilmd(MapTransform):
    """Dictionary wrapper of :class:`LoadFilm`.

    Parameters
    ----------
    keys : str or sequence of str
        Keys whose values are film paths or :class:`Film` objects.
    spacing : float, str or tuple of float, optional
        Spacing in mm to use instead of the files'.
    keep_film : bool
        Also store the :class:`Film` under ``"<key>_film"`` (for writers that
        need the DICOM header, such as DICOM-SEG).
    allow_missing_keys : bool
        Skip keys that are absent.
    working_spacing : float, optional
        The working grid the films go to, mm: a film read with ``decode="reduced"`` gives only what it
        needs (see :func:`film_to_metatensor`). Paths are still read with ``decode="full"`` unless
        ``decode`` says otherwise.
    decode : str
        How films given as paths are read (:func:`medlung.load_film`).
    """

    def __init__(
        self,
        keys: KeysCollection,
        spacing: float | str | Sequence[float] | None = None,
        keep_film: bool = False,
        allow_missing_keys: bool = False,
        working_spacing: float | None = None,
        decode: str = "full",
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spacing = spacing
        self.keep_film = keep_film
        self.working_spacing = working_spacing
        self.decode = decode

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            source = d[key]
            film = (
                source
                if isinstance(source, Film)
                else load_film(source, spacing=self.spacing, decode=self.decode, working_spacing=self.working_spacing)
            )
            d[key] = film_to_metatensor(film, self.working_spacing)
            if self.keep_film:
                d[f"{key}_film"] = film
        return d


class LoadMaskd(MapTransform):
    """Load masks / label maps (PNG, NIfTI) as channel-first ``MetaTensor`` objects.

    Parameters
    ----------
    keys : str or sequence of str
        Keys holding mask paths.
    reference_key : str, optional
        Key of the already-loaded film; its affine and spacing meta are
        copied so film and mask share one grid.
    binary : bool
        Map every non-zero value to 1 (both lungs as one class).
    """

    def __init__(
        self,
        keys: KeysCollection,
        reference_key: str | None = "image",
        binary: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.reference_key = reference_key
        self.binary = binary

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        from medlung.io.masks import load_label_map

        d = dict(data)
        reference = d.get(self.reference_key) if self.reference_key else None
        for key in self.key_iterator(d):
            shape = tuple(reference.shape[-2:]) if reference is not None else None
            labels = load_label_map(d[key], shape)
            if self.binary:
                labels = (labels > 0).astype(np.uint8)
            tensor = torch.from_numpy(labels.astype(np.float32))[None]
            if reference is not None:
                meta = {k: v for k, v in reference.meta.items() if k != "affine"}
                meta["filename_or_obj"] = str(d[key])
                d[key] = MetaTensor(tensor, affine=reference.affine.clone(), meta=meta)
            else:
                d[key] = MetaTensor(tensor, meta={"filename_or_obj": str(d[key]), "spacing_known": False})
        return d

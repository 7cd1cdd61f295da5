"""MONAI transforms for films: loading, the standard display, the working grid, intensity, and the presets for training and inference."""

from medlung.transforms.display import ToStandardDisplay, ToStandardDisplayd
from medlung.transforms.loading import LoadFilm, LoadFilmd, LoadMaskd, film_to_metatensor
from medlung.transforms.working_grid import (
    NOMINAL_FIELD_MM,
    ToWorkingGrid,
    ToWorkingGridd,
    nominal_spacing,
    resample,
    working_shape,
)

__all__ = [
    "NOMINAL_FIELD_MM",
    "LoadFilm",
    "LoadFilmd",
    "LoadMaskd",
    "ToStandardDisplay",
    "ToStandardDisplayd",
    "ToWorkingGrid",
    "ToWorkingGridd",
    "film_to_metatensor",
    "nominal_spacing",
    "resample",
    "working_shape",
]

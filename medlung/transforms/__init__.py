"""MONAI transforms that bring films into MONAI (array transform + ``...d`` dictionary wrapper)."""

from medlung.transforms.loading import LoadFilm, LoadFilmd, film_to_metatensor

__all__ = ["LoadFilm", "LoadFilmd", "film_to_metatensor"]

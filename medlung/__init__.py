"""medlung: lung segmentation on chest radiographs, keeping the film's pixel spacing.

Public API::

    import medlung
    film = medlung.load_film("chest.dcm")      # pixels (rows, cols), spacing (row_mm, col_mm)
    masks = medlung.Segmenter()(film)          # labels 0/1/2 on the native grid, areas in cm²
    medlung.write_dicom_seg(film, masks.labels, "chest_seg.dcm", model_version=masks.model_version)

Heavy modules (torch, MONAI, highdicom) are imported only when a name that
needs them is first used.
"""

from __future__ import annotations

from medlung.errors import MedlungError
from medlung.film import Film
from medlung.io import load_film
from medlung.version import __version__

__all__ = [
    "Film",
    "LungMasks",
    "MedlungError",
    "Segmenter",
    "__version__",
    "load_film",
    "to_dataframe",
    "write_dicom_seg",
]

_LAZY = {
    "Segmenter": ("medlung.inference", "Segmenter"),
    "LungMasks": ("medlung.inference", "LungMasks"),
    "write_dicom_seg": ("medlung.writers.dicom_seg", "write_dicom_seg"),
    "to_dataframe": ("medlung.notebook", "to_dataframe"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'medlung' has no attribute {name!r}")
